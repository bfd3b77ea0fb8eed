-- 0007: token scopes (an integration token reads events back only with `events:read`),
-- and a fast lookup of an agent's tokens (deactivation revokes them all).
ALTER TABLE api_tokens ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
CREATE INDEX api_tokens_agent ON api_tokens (agent_id) WHERE agent_id IS NOT NULL;
