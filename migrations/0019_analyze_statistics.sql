-- 0019_analyze_statistics: ANALYZE skips the jsonb columns no query's plan needs statistics of.
-- messages.content (and timers.payload) are read by key (content->>'event', payload->>'name'),
-- expressions whose column statistics the planner does not use; comparing whole jsonb values to
-- build them was half of an ANALYZE of messages (173 of 359 ms on 24,200 rows, the sample a
-- bigger table also takes), and autovacuum analyzes a table again after each 10% of it changed.
-- The full-text column (search) keeps its statistics: the search query's plan depends on them.
ALTER TABLE messages ALTER COLUMN content SET STATISTICS 0;
ALTER TABLE timers ALTER COLUMN payload SET STATISTICS 0;
