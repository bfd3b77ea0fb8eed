-- 0003_inbox: the shared inbox. Agents and their teams, presence for auto-assignment, canned
-- responses, idempotency keys for agent sends, full-text search and keyset-pagination indexes.
-- Agent API tokens link here through api_tokens.agent_id.

CREATE TABLE agents (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    email             text UNIQUE,
    capacity          int NOT NULL DEFAULT 5 CHECK (capacity >= 0),   -- open conversations at once
    presence          text NOT NULL DEFAULT 'offline' CHECK (presence IN ('online', 'away', 'offline')),
    last_seen_at      timestamptz,                                    -- last heartbeat
    last_assigned_at  timestamptz,                                    -- round-robin order
    created_at        timestamptz NOT NULL DEFAULT now(),
    deactivated_at    timestamptz
);

CREATE TABLE team_members (
    team_id     bigint NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    agent_id    bigint NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, agent_id)
);
CREATE INDEX team_members_agent ON team_members (agent_id);

-- Body with {{contact.name}}, {{contact.attributes.plan}}, {{agent.name}} or caller-given variables.
CREATE TABLE canned_responses (
    id          bigserial PRIMARY KEY,
    short_code  text NOT NULL UNIQUE,
    title       text NOT NULL DEFAULT '',
    body        text NOT NULL,
    team_id     bigint REFERENCES teams(id) ON DELETE CASCADE,   -- NULL: everyone's
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- An agent send retried with the same Idempotency-Key returns the first message (the key is
-- taken inside the send's transaction, so two concurrent retries serialize on the primary key).
CREATE TABLE send_idempotency (
    scope            text NOT NULL,     -- whose key: "token:<id>" or "admin"
    key              text NOT NULL,
    request_hash     text NOT NULL,
    conversation_id  bigint NOT NULL,
    message_id       bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Full-text search ('simple' configuration: no language-specific stemming, customers write in any).
-- Only the first 100k characters are indexed: a tsvector is capped at 1 MB and a long email body
-- must never make an insert fail.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', left(body, 100000))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);

ALTER TABLE contacts ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        to_tsvector('simple', left(coalesce(name, '') || ' ' || coalesce(external_id, ''), 1000))
        || jsonb_to_tsvector('simple', attributes, '["string", "numeric"]')
    ) STORED;
CREATE INDEX contacts_search ON contacts USING gin (search);
CREATE INDEX identities_address_prefix ON identities (address text_pattern_ops);

-- Keyset pagination. Sort keys never NULL (coalesce to +/-infinity) so (key, id) row comparisons
-- walk an index in either sort: longest waiting first, newest first.
CREATE INDEX conversations_waiting_all
    ON conversations ((coalesce(waiting_since, 'infinity'::timestamptz)), id);
CREATE INDEX conversations_newest_all
    ON conversations ((coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_waiting_key
    ON conversations (status, (coalesce(waiting_since, 'infinity'::timestamptz)), id);
CREATE INDEX conversations_newest_key
    ON conversations (status, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_team_waiting
    ON conversations (team_id, (coalesce(waiting_since, 'infinity'::timestamptz)), id);
CREATE INDEX conversations_team_newest
    ON conversations (team_id, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_assignee ON conversations (assignee_id, status) WHERE assignee_id IS NOT NULL;
-- the auto-assigner's queue: agent mode, open, nobody on it
CREATE INDEX conversations_unassigned_queue
    ON conversations ((coalesce(waiting_since, 'infinity'::timestamptz)), id)
    WHERE mode = 'agent' AND status = 'open' AND assignee_id IS NULL;
CREATE INDEX conversations_labels ON conversations USING gin (labels);

CREATE INDEX episodes_resolved ON episodes (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX episodes_opened ON episodes (opened_at);
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX audit_log_created ON audit_log (created_at);
