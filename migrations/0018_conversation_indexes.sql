-- 0018_conversation_indexes: fewer index entries written per conversation update. The row is
-- updated on every inbound message (ingest) and every turn (the worker's one write), and each of
-- those updates changes last_message_at, which the "newest" indexes hold, so none is a HOT update:
-- every index of the table gets a new entry each time. Indexes that no query reads go, and those
-- that serve a subset of the rows (agent queue, labelled, routed to a team) index that subset
-- only, so a bot conversation's updates skip them. Plans checked with EXPLAIN on 200,000
-- conversations: the inbox lists, the metrics queue count and the auto-assigner keep their indexes.

-- (last_message_at DESC, id DESC): no query sorts on the bare column; the lists use
-- conversations_newest_all / _newest_key / _team_newest (coalesce(last_message_at, '-infinity')).
DROP INDEX IF EXISTS conversations_recent;

-- (status, mode, waiting_since, id) served the agents' queue count (gateway.app.metrics): the
-- same rows, indexed only while in that queue.
DROP INDEX IF EXISTS conversations_queue;
CREATE INDEX conversations_agent_open ON conversations (waiting_since) WHERE mode = 'agent' AND status = 'open';

-- Most conversations have no label: those with one only (the inbox's label filter says
-- `labels <> '{}'` too, so the planner may use it).
DROP INDEX IF EXISTS conversations_labels;
CREATE INDEX conversations_labels ON conversations USING gin (labels) WHERE labels <> '{}';

-- A team's lists: only conversations routed to a team (a filter team_id = $n implies it).
DROP INDEX IF EXISTS conversations_team_waiting;
CREATE INDEX conversations_team_waiting
    ON conversations (team_id, (coalesce(waiting_since, 'infinity'::timestamptz)), id) WHERE team_id IS NOT NULL;
DROP INDEX IF EXISTS conversations_team_newest;
CREATE INDEX conversations_team_newest
    ON conversations (team_id, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC)
    WHERE team_id IS NOT NULL;
