"""A bot turn writes the conversation row once: counted by a trigger installed for this test only."""
from __future__ import annotations

from pathlib import Path

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for

OUR = "+15550001111"
CUSTOMER = "+14155550100"
FLOWS = Path(__file__).resolve().parents[2] / "flows"

# Every UPDATE of a conversations row, and every inbound message marked processed, recorded with
# the transaction that did it: the writes of one turn are the conversation writes of the
# transaction that marked its message processed.
COUNTING = """
CREATE TABLE test_row_writes (txid bigint NOT NULL, tbl text NOT NULL, row_id bigint NOT NULL);
CREATE FUNCTION test_row_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_row_writes VALUES (txid_current(), TG_TABLE_NAME, NEW.id); RETURN NEW; END $$;
CREATE TRIGGER test_conversation_writes AFTER UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION test_row_write();
CREATE TRIGGER test_message_processed AFTER UPDATE OF processed_at ON messages
    FOR EACH ROW WHEN (OLD.processed_at IS NULL AND NEW.processed_at IS NOT NULL)
    EXECUTE FUNCTION test_row_write();
"""
UNCOUNT = """
DROP TRIGGER IF EXISTS test_conversation_writes ON conversations;
DROP TRIGGER IF EXISTS test_message_processed ON messages;
DROP FUNCTION IF EXISTS test_row_write();
DROP TABLE IF EXISTS test_row_writes;
"""


async def say(url, fake, text):
    status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                          twilio_inbound_params(CUSTOMER, OUR, text), fake.auth_token)
    assert status == 200


async def writes_per_turn(pool) -> list[int]:
    """For each processed inbound message, in seq order: how often its turn updated the conversation."""
    rows = await pool.fetch(
        """SELECT m.seq, (SELECT count(*) FROM test_row_writes c WHERE c.tbl = 'conversations'
                          AND c.txid = p.txid AND c.row_id = m.conversation_id) AS writes
           FROM test_row_writes p JOIN messages m ON m.id = p.row_id
           WHERE p.tbl = 'messages' ORDER BY m.seq""")
    return [r["writes"] for r in rows]


async def test_each_bot_turn_writes_the_conversation_row_once(settings, pool, clean, redis_client):
    await pool.execute(UNCOUNT)
    await pool.execute(COUNTING)
    try:
        async with FakeTwilio() as fake:
            s = settings.with_(default_handler="flow", twilio_account_sid=fake.account_sid,
                               twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                               twilio_api_base=fake.base_url, flows_dir=FLOWS)
            async with running_gateway(s) as (rt, url):
                for n, text in enumerate(("hi", "1"), start=1):   # a new episode, then a plain turn
                    await say(url, fake, text)

                    async def answered(n=n):
                        return len(fake.requests) >= n
                    await wait_for(answered, timeout=15, message=f"no bot reply to {text!r}")
        bodies = [r.value("Body") for r in fake.requests]
        assert "How can I help" in bodies[0] and "order number" in bodies[1]
        assert await writes_per_turn(pool) == [1, 1]
    finally:
        await pool.execute(UNCOUNT)
