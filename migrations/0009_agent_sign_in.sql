-- 0009_agent_sign_in: agents sign in to the console with email and password.
-- Passwords are stored as scrypt hashes (gateway.agent_sessions); sessions and invites are stored
-- as SHA-256 hashes of their random tokens, so a database dump signs nobody in.
ALTER TABLE agents ADD COLUMN role text NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'admin'));
ALTER TABLE agents ADD COLUMN password_hash text;
ALTER TABLE agents ADD COLUMN password_set_at timestamptz;

CREATE TABLE agent_sessions (
    id            bigserial PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    agent_id      bigint NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,                    -- signed out, deactivated or password changed
    user_agent    text NOT NULL DEFAULT '',
    address       text NOT NULL DEFAULT ''
);
CREATE INDEX agent_sessions_live ON agent_sessions (agent_id) WHERE ended_at IS NULL;

CREATE TABLE agent_invites (
    id          bigserial PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    agent_id    bigint NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX agent_invites_agent ON agent_invites (agent_id);
