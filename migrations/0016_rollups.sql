-- 0016_rollups: daily rollups of the inbox metrics (gateway/inbox/rollups.py), so metrics/summary over
-- a month reads about 30 rows per group plus the live part from the raw tables. Days are UTC days.
-- A worker-role pass (GATEWAY_ROLLUP_INTERVAL) computes each closed day from the raw rows (oldest
-- first, so the rows that existed before this migration are backfilled by the first passes) and
-- recomputes the days the conversation owner marks in rollup_dirty when it changes a closed day's
-- figures (an escalation or first answer of an older episode, a reopen, a team change, a merge).
-- A day is read from the rollups only when it is in rollup_days and has no dirty mark; every other
-- part of a period is computed from the raw rows, so an answer never depends on the pass having run.
-- inbox_id and team_id 0 stand for "none" (they are key columns).

CREATE TABLE rollup_days (
    day        date PRIMARY KEY,
    rolled_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollup_dirty (
    id         bigserial PRIMARY KEY,
    day        date NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollup_dirty_day ON rollup_dirty (day);

-- messages of kind 'message' per day, channel and inbox, by direction
CREATE TABLE rollup_messages (
    day        date NOT NULL,
    channel    text NOT NULL,
    inbox_id   bigint NOT NULL,
    inbound    bigint NOT NULL,
    outbound   bigint NOT NULL,
    internal   bigint NOT NULL,
    PRIMARY KEY (day, channel, inbox_id)
);

-- the conversations with an inbound message per day and inbox (for distinct counts over a period) ...
CREATE TABLE rollup_inbox_conversations (
    conversation_id bigint NOT NULL,
    inbox_id        bigint NOT NULL,
    day             date NOT NULL,
    PRIMARY KEY (conversation_id, inbox_id, day)
);
CREATE INDEX rollup_inbox_conversations_day ON rollup_inbox_conversations (day);

-- ... and how many of a day's were last seen on prev_day ('-infinity': never before), so the
-- conversations of a run of days [a, b) are the rows of those days with prev_day < a
CREATE TABLE rollup_inbox_reach (
    day        date NOT NULL,
    inbox_id   bigint NOT NULL,
    prev_day   date NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (day, inbox_id, prev_day)
);

-- agents' replies (outbound messages they wrote) and resolutions per day
CREATE TABLE rollup_agents (
    day        date NOT NULL,
    agent_id   bigint NOT NULL,
    replies    bigint NOT NULL,
    resolved   bigint NOT NULL,
    PRIMARY KEY (day, agent_id)
);

-- episodes opened (of which never escalated), escalated and resolved per day, by the conversation's team
CREATE TABLE rollup_episodes (
    day        date NOT NULL,
    team_id    bigint NOT NULL,
    opened     bigint NOT NULL,
    bot_only   bigint NOT NULL,
    escalated  bigint NOT NULL,
    resolved   bigint NOT NULL,
    PRIMARY KEY (day, team_id)
);

-- every distinct duration (exact seconds) with its count, per day of the event that ends the
-- measured span's period ('first_response': escalation day, 'resolution': resolution day), so the
-- median over a period is exact
CREATE TABLE rollup_durations (
    metric     text NOT NULL CHECK (metric IN ('first_response', 'resolution')),
    day        date NOT NULL,
    seconds    numeric NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (metric, day, seconds)
);

-- the live part of a period reads escalations by time
CREATE INDEX episodes_escalated ON episodes (escalated_at) WHERE escalated_at IS NOT NULL;
