-- 0005_journeys: journey enrollments (one active per contact and journey), the nudges they sent,
-- the sends they skipped (with the reason) and conversions. Journey definitions are stored by
-- version in flow_versions under the name 'journey:<name>'. Stats are derived from these tables.

CREATE TABLE journey_enrollments (
    id                  bigserial PRIMARY KEY,
    journey             text NOT NULL,
    version             text NOT NULL,
    contact_id          bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    conversation_id     bigint REFERENCES conversations(id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'completed', 'converted', 'exited')),
    step                text,                 -- the step the next timer runs (or last one run)
    seq                 int NOT NULL DEFAULT 0,  -- bumped per scheduled step; stale timers are ignored
    waiting_event       text,                 -- set while a "wait until event" step waits
    variant             text,                 -- random split outcome ('holdout' for the holdout group)
    priority            int NOT NULL DEFAULT 0,
    trigger_event_id    bigint REFERENCES events(id) ON DELETE SET NULL,
    data                jsonb NOT NULL DEFAULT '{}'::jsonb,  -- trigger properties, wait outcomes
    entered_at          timestamptz NOT NULL,
    exited_at           timestamptz,
    exit_reason         text,
    converted_at        timestamptz,
    conversion_event_id bigint REFERENCES events(id) ON DELETE SET NULL,
    attributed_step     text,                 -- the last nudge before conversion
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- At most one active enrollment per contact and journey, enforced by the schema.
CREATE UNIQUE INDEX journey_enrollments_one_active ON journey_enrollments (journey, contact_id)
    WHERE status = 'active';
CREATE INDEX journey_enrollments_contact ON journey_enrollments (contact_id, journey, entered_at);
CREATE INDEX journey_enrollments_journey ON journey_enrollments (journey, status);

-- One row per message a journey queued; fallbacks are further rows with attempt + 1.
CREATE TABLE journey_sends (
    id              bigserial PRIMARY KEY,
    enrollment_id   bigint NOT NULL REFERENCES journey_enrollments(id) ON DELETE CASCADE,
    journey         text NOT NULL,
    step            text NOT NULL,
    attempt         int NOT NULL DEFAULT 0,   -- 0: first channel, 1..: fallbacks
    message_id      bigint NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE,
    channel         text NOT NULL,
    remaining       text[] NOT NULL DEFAULT '{}',  -- channels still to try on non-delivery
    fallback_after  interval,
    purpose         text NOT NULL DEFAULT 'marketing',
    state           text NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'superseded', 'cancelled')),
    sent_at         timestamptz NOT NULL,     -- by the runtime clock (local-day frequency cap)
    delivered_at    timestamptz,
    read_at         timestamptz,
    failed_at       timestamptz,
    replied_at      timestamptz,
    clicked_at      timestamptz,
    UNIQUE (enrollment_id, step, attempt)
);
CREATE INDEX journey_sends_enrollment ON journey_sends (enrollment_id, sent_at);
CREATE INDEX journey_sends_journey ON journey_sends (journey, step);

-- Every send a guard stopped, with its reason (frequency_cap, no_consent, contact_busy, ...).
CREATE TABLE journey_skips (
    id              bigserial PRIMARY KEY,
    enrollment_id   bigint NOT NULL REFERENCES journey_enrollments(id) ON DELETE CASCADE,
    journey         text NOT NULL,
    step            text NOT NULL,
    reason          text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    at              timestamptz NOT NULL
);
CREATE INDEX journey_skips_journey ON journey_skips (journey, step, reason);
CREATE INDEX journey_skips_enrollment ON journey_skips (enrollment_id);
