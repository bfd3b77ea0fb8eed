-- 0013_consent_history: every consent answer kept with its proof (gateway/consent.py is the only
-- writer). `consents` stays the current answer per address, channel and purpose; `consent_history`
-- holds each change: who or what recorded it (source), when it happened (occurred_at, which an
-- import may set to the original opt-in time) and the proof (text shown, form or page, IP).
ALTER TABLE consents ADD COLUMN proof jsonb;

CREATE TABLE consent_history (
    id               bigserial PRIMARY KEY,
    address_kind     text NOT NULL,
    address          text NOT NULL,
    channel          text NOT NULL,
    purpose          text NOT NULL,
    granted          boolean NOT NULL,
    source           text,
    proof            jsonb,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_history_address ON consent_history (address_kind, address, id);
