"""Message search finds the newest matches whether a word is everywhere (found among the newest
messages) or in one old message only (found through the GIN index), in the caller's scope."""
from __future__ import annotations

from gateway.inbox.scope import Scope
from gateway.inbox.search import RECENT_WINDOW, search_messages

SEED = """
WITH c AS (INSERT INTO contacts (name) SELECT 'search-' || g FROM generate_series(1, 2) g RETURNING id),
     cv AS (INSERT INTO conversations (contact_id, last_seq, team_id)
            SELECT id, $1, CASE WHEN row_number() OVER (ORDER BY id) = 1 THEN 1 END FROM c RETURNING id)
INSERT INTO messages (conversation_id, seq, direction, channel, body, author_type, created_at)
SELECT cv.id, g, 'in', 'sms',
       CASE WHEN g = 3 THEN 'parcel number ZQ77 is lost' ELSE 'where is my order ' || g END,
       'customer', timestamptz '2024-01-01' + g * interval '1 minute'
FROM cv, generate_series(1, $1) g
"""


async def test_a_common_word_and_a_rare_old_one_both_come_back_newest_first(pool, clean):
    await pool.execute("INSERT INTO teams (id, name) VALUES (1, 'one'), (2, 'two') ON CONFLICT DO NOTHING")
    per_conversation = RECENT_WINDOW          # twice the window in all: the rare word is far outside it
    await pool.execute(SEED, per_conversation)
    admin = Scope(everything=True)
    async with pool.acquire() as conn:
        common = await search_messages(conn, admin, "order", limit=5)
        assert [r["seq"] for r in common] == [per_conversation] * 2 + [per_conversation - 1] * 2 + [per_conversation - 2]
        assert [r["created_at"] for r in common] == sorted((r["created_at"] for r in common), reverse=True)
        rare = await search_messages(conn, admin, "ZQ77")
        assert sorted(r["seq"] for r in rare) == [3, 3] and "ZQ77" in rare[0]["snippet"]
        # an agent of team 2 sees only the unrouted conversation's message
        agent = Scope(everything=False, agent_id=None, team_ids=frozenset({2}), unrouted=True)
        mine = await search_messages(conn, agent, "ZQ77")
        team_one = await pool.fetchval("SELECT id FROM conversations WHERE team_id = 1")
        assert len(mine) == 1 and mine[0]["conversation_id"] != team_one
        assert await search_messages(conn, admin, "nothing-like-this") == []
