-- 0001_core: contacts, identities, one thread per contact with episodes, messages, outbox,
-- timers, consent, events and audit. PostgreSQL is the source of truth; Redis only carries work.

CREATE TABLE contacts (
    id              bigserial PRIMARY KEY,
    name            text,
    external_id     text UNIQUE,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    locale          text,
    timezone        text,
    merged_into     bigint REFERENCES contacts(id),
    erased_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- kind: phone (E.164, shared by sms and whatsapp), email (lowercase), whatsapp_id (BSUID),
-- chat (web chat visitor id), api (external id of a custom source)
CREATE TABLE identities (
    id              bigserial PRIMARY KEY,
    contact_id      bigint NOT NULL REFERENCES contacts(id),
    kind            text NOT NULL,
    address         text NOT NULL,
    verified        boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, address)
);
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE teams (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One conversation (thread) per contact. Episodes split it for metrics and agent work.
CREATE TABLE conversations (
    id                   bigserial PRIMARY KEY,
    contact_id           bigint NOT NULL UNIQUE REFERENCES contacts(id),
    status               text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'pending', 'snoozed', 'resolved')),
    mode                 text NOT NULL DEFAULT 'bot' CHECK (mode IN ('bot', 'agent')),
    team_id              bigint REFERENCES teams(id),
    assignee_id          bigint,
    flow_name            text,
    flow_version         text,
    flow_state           text,
    flow_data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    labels               text[] NOT NULL DEFAULT '{}',
    last_seq             bigint NOT NULL DEFAULT 0,
    last_inbound_at      timestamptz,
    last_inbound_channel text,
    last_message_at      timestamptz,
    waiting_since        timestamptz,
    snoozed_until        timestamptz,
    current_episode_id   bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_queue ON conversations (status, mode, waiting_since, id);
CREATE INDEX conversations_recent ON conversations (last_message_at DESC, id DESC);

CREATE TABLE episodes (
    id                   bigserial PRIMARY KEY,
    conversation_id      bigint NOT NULL REFERENCES conversations(id),
    opened_at            timestamptz NOT NULL DEFAULT now(),
    escalated_at         timestamptz,
    first_response_at    timestamptz,
    resolved_at          timestamptz,
    resolved_by          bigint,
    handled_by_bot_only  boolean,
    escalation_reason    text,
    channel              text
);
CREATE INDEX episodes_conversation ON episodes (conversation_id, opened_at);

-- Everything in a thread: customer messages (in), our messages (out), private notes and system
-- events (internal), all ordered by a per-thread seq.
CREATE TABLE messages (
    id                    bigserial PRIMARY KEY,
    conversation_id       bigint NOT NULL REFERENCES conversations(id),
    seq                   bigint NOT NULL,
    episode_id            bigint,
    direction             text NOT NULL CHECK (direction IN ('in', 'out', 'internal')),
    kind                  text NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'note', 'event')),
    channel               text NOT NULL,
    provider              text,
    provider_message_id   text,
    sender_address        text,
    recipient_address     text,
    body                  text NOT NULL DEFAULT '',
    content               jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                text,
    error_code            text,
    error_message         text,
    author_type           text,       -- customer | bot | agent | system | journey | api
    author_id             bigint,
    purpose               text,
    segments              int,
    raw                   jsonb,
    processed_at          timestamptz,
    process_attempts      int NOT NULL DEFAULT 0,
    process_order         bigint,     -- global processing order, for audits and tests
    created_at            timestamptz NOT NULL DEFAULT now(),
    status_updated_at     timestamptz,
    UNIQUE (conversation_id, seq)
);
-- The dedupe promise: one row per provider message id per channel, enforced by the schema.
CREATE UNIQUE INDEX messages_provider_id ON messages (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL AND direction = 'in';
CREATE UNIQUE INDEX messages_outbound_provider_id ON messages (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL AND direction = 'out';
CREATE INDEX messages_unprocessed ON messages (conversation_id, seq)
    WHERE direction = 'in' AND processed_at IS NULL;
CREATE SEQUENCE message_process_order;

-- Outbound delivery work. A row is written in the same transaction as the message it sends.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL UNIQUE REFERENCES messages(id),
    conversation_id  bigint NOT NULL REFERENCES conversations(id),
    channel          text NOT NULL,
    to_address       text NOT NULL,
    sender_key       text,
    purpose          text NOT NULL DEFAULT 'reply',
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'done', 'failed', 'dead', 'skipped')),
    attempts         int NOT NULL DEFAULT 0,
    max_attempts     int NOT NULL DEFAULT 8,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_error       text,
    fallback_from    bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_stuck ON outbox (locked_until) WHERE state = 'sending';

-- Durable timers (journey waits, reply timeouts, snoozes), claimed with SKIP LOCKED.
CREATE TABLE timers (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    due_at           timestamptz NOT NULL,
    conversation_id  bigint,
    ref_id           bigint,
    dedupe_key       text UNIQUE,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'done', 'cancelled')),
    attempts         int NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    fired_at         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
CREATE INDEX timers_stuck ON timers (locked_until) WHERE state = 'running';
CREATE INDEX timers_conversation ON timers (conversation_id) WHERE state = 'pending';

-- Consent per address, channel and purpose. purpose 'all' (STOP on SMS) blocks everything but
-- the compliance confirmation; 'marketing' blocks nudges only.
CREATE TABLE consents (
    address_kind     text NOT NULL,
    address          text NOT NULL,
    channel          text NOT NULL,
    purpose          text NOT NULL,
    granted          boolean NOT NULL,
    source           text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address_kind, address, channel, purpose)
);

-- Addresses that must never be messaged (erased contacts that opted out, global suppression).
CREATE TABLE suppressions (
    address_hash     text PRIMARY KEY,
    reason           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Business events (journey triggers) and the audit log.
CREATE TABLE events (
    id               bigserial PRIMARY KEY,
    event_key        text NOT NULL UNIQUE,
    contact_id       bigint NOT NULL REFERENCES contacts(id),
    name             text NOT NULL,
    properties       jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at      timestamptz NOT NULL,
    source           text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_contact ON events (contact_id, occurred_at);

CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    actor_type       text NOT NULL,
    actor_id         bigint,
    action           text NOT NULL,
    conversation_id  bigint,
    contact_id       bigint,
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_conversation ON audit_log (conversation_id, id);

-- API tokens: shown once, stored hashed, revocable, with a visible prefix.
CREATE TABLE api_tokens (
    id               bigserial PRIMARY KEY,
    prefix           text NOT NULL UNIQUE,
    token_hash       text NOT NULL,
    name             text NOT NULL,
    role             text NOT NULL CHECK (role IN ('admin', 'agent', 'integration', 'readonly')),
    agent_id         bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    revoked_at       timestamptz
);

-- Flow definitions by version, so a conversation keeps running on the version it started with.
CREATE TABLE flow_versions (
    name             text NOT NULL,
    version          text NOT NULL,
    definition       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Stored attachment content by content hash (email attachments, downloaded media).
CREATE TABLE blobs (
    ref              text PRIMARY KEY,
    content_type     text,
    size             int NOT NULL,
    data             bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
