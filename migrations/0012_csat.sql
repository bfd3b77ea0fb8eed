-- 0012_csat: the answer to the satisfaction survey, recorded on the episode it rates
-- (gateway/inbox/csat.py), with the agent and team it rates, so reports need no guessing later.
ALTER TABLE episodes
    ADD COLUMN csat_score      smallint CHECK (csat_score BETWEEN 1 AND 5),
    ADD COLUMN csat_at         timestamptz,
    ADD COLUMN csat_agent_id   bigint,
    ADD COLUMN csat_team_id    bigint,
    ADD COLUMN csat_message_id bigint;
CREATE INDEX episodes_csat_at ON episodes (csat_at) WHERE csat_at IS NOT NULL;
