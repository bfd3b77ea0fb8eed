"""Batched turns (GATEWAY_WORKER_BATCH): one transaction takes the next message of many
conversations, and keeps every promise a single turn keeps."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import LocalServer, kill_a_worker_mid_batch, running_gateway, wait_for
from gateway.inboxes import store as inboxes

FLOWS = Path(__file__).resolve().parents[2] / "flows"
OUR = "+15550001111"
DONE = "SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NOT NULL"


async def test_worker_killed_in_the_middle_of_batches_processes_each_message_once_in_order(
        settings, pool, clean, redis_client, spawn, tmp_path):
    """150 conversations with 4 messages each, batches of 50: the first worker is SIGKILLed while
    its batches run, a second finishes; each message processed once, in order, answered once."""
    await kill_a_worker_mid_batch(settings, pool, spawn, tmp_path, conversations=150, per_conversation=4,
                                  kill_after=120, GATEWAY_WORKER_BATCH=50, GATEWAY_WORKER_CONCURRENCY=2)
    # batches were committed: one transaction (one processed_at) for many conversations
    widest = await pool.fetchval(
        """SELECT max(n) FROM (SELECT count(DISTINCT conversation_id) AS n FROM messages
                               WHERE direction = 'in' GROUP BY processed_at) b""")
    assert widest > 1, "no batch was committed: every turn had its own transaction"
    assert await pool.fetchval("SELECT max(process_attempts) FROM messages WHERE direction = 'in'") <= 2


class HeldOrderApi(LocalServer):
    """The business's order API; an answer for AB99999 waits until the test releases it."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.release = asyncio.Event()

    def routes(self, app):
        app.router.add_get("/orders/{id}", self.order)

    async def order(self, request):
        self.calls.append(request.match_info["id"])
        if request.match_info["id"] == "AB99999":
            await self.release.wait()
        return web.json_response({"status": "shipped", "eta": "2026-11-30"})


async def test_a_turn_waiting_on_an_http_action_holds_no_batch(settings, pool, clean, redis_client):
    """A customer whose first message runs the order look-up is taken out of the batch before the
    request goes out (the API is called once) and waits alone; the others of its batch are answered
    meanwhile, and so are customers who write while it waits, even with one batch in flight
    (GATEWAY_WORKER_CONCURRENCY=1): it waits beside the batches, not in one."""
    async with FakeTwilio() as fake, HeldOrderApi() as api:
        s = settings.with_(default_handler="flow", flows_dir=FLOWS, twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                           twilio_api_base=fake.base_url, business_api_base=api.base_url, worker_batch=20,
                           worker_concurrency=1)
        customers = [f"+1415555{n:04d}" for n in range(11)]
        later = [f"+1415556{n:04d}" for n in range(3)]
        async with running_gateway(s, roles=("http",)) as (rt, url):   # all queued before a worker starts
            for n, customer in enumerate(customers):
                text = "where is my order AB99999" if n == 0 else "hi"
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, OUR, text), fake.auth_token)
                assert status == 200
        async with running_gateway(s, roles=("http", "worker")) as (rt, url):
            def menus(expected):
                async def check():
                    return sorted(r.value("To") for r in fake.requests
                                  if "How can I help" in (r.value("Body") or "")) == sorted(expected)
                return check
            await wait_for(menus(customers[1:]), timeout=30,
                           message="the batch waited on another conversation's HTTP call")
            async def looked_up():      # its drain on its own starts once its batch's round is done
                return api.calls == ["AB99999"]
            await wait_for(looked_up, timeout=30, message="the look-up's turn never called the API")
            assert not api.release.is_set()
            for customer in later:
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, OUR, "hi"), fake.auth_token)
                assert status == 200
            await wait_for(menus(customers[1:] + later), timeout=30,
                           message="customers who wrote later waited on another conversation's HTTP call")
            assert not api.release.is_set()
            api.release.set()

            async def answered():
                return any("AB99999 is shipped" in (r.value("Body") or "") and r.value("To") == customers[0]
                           for r in fake.requests)
            await wait_for(answered, timeout=30, message="the look-up's turn was not answered")
    assert api.calls == ["AB99999"], "the look-up was requested more than once"
    assert await pool.fetchval(DONE) == 14


SALES = "+15550003333"


async def test_turns_of_one_batch_are_routed_as_each_alone(settings, pool, clean, redis_client,
                                                          sales_and_support_flows):
    """A batch reads what routing needs (identities, last inbound, consent, inboxes) once for all
    its turns: each customer is still answered from the inbox they wrote to, on that inbox's flow,
    and a customer who opted out gets no reply (the thread says why)."""
    flows = sales_and_support_flows
    sales_customers = [f"+1415555{n:04d}" for n in range(4)]
    support_customers = [f"+1415556{n:04d}" for n in range(4)]
    opted_out = "+14155579999"
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="flow", flows_dir=flows, default_flow="support",
                           twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                           twilio_from_number=OUR, twilio_api_base=fake.base_url, worker_batch=20)
        async with running_gateway(s) as (rt, url):
            inbound = f"{url}/webhooks/twilio/inbound"
            async with pool.acquire() as conn:
                await inboxes.create_inbox(conn, name="Sales", channel="sms", provider="twilio", address=SALES,
                                           flow="sales")
            assert (await post_twilio_inbound(inbound, twilio_inbound_params(opted_out, OUR, "STOP"),
                                              fake.auth_token))[0] == 200
            async def stop_answered():
                return any(r.value("To") == opted_out for r in fake.requests if r.method == "POST")
            await wait_for(stop_answered, message="no answer to STOP")
        async with running_gateway(s, roles=("http",)) as (rt, url):   # all queued before a worker starts
            inbound = f"{url}/webhooks/twilio/inbound"
            for customer, to in ([(c, SALES) for c in sales_customers] + [(c, OUR) for c in support_customers]
                                 + [(opted_out, OUR)]):
                status, _ = await post_twilio_inbound(inbound, twilio_inbound_params(customer, to, "hi"),
                                                      fake.auth_token)
                assert status == 200
        async with running_gateway(s, roles=("http", "worker")):
            async def replies():
                posts = [r for r in fake.requests if r.method == "POST" and r.value("To") != opted_out]
                return posts if len(posts) >= 8 else None
            sent = {r.value("To"): (r.value("From"), r.value("Body")) for r in await wait_for(replies, timeout=30)}
            async def all_done():
                return await pool.fetchval(DONE + " AND body = 'hi'") == 9
            await wait_for(all_done, timeout=30, message="not every message was processed")
    for c in sales_customers:
        assert sent[c] == (SALES, "Welcome to sales! What are you looking for?")
    for c in support_customers:
        assert sent[c] == (OUR, "Support here. What are you looking for?")
    assert [r.value("Body") for r in fake.requests if r.method == "POST" and r.value("To") == opted_out][1:] == []
    assert await pool.fetchval(
        """SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
           JOIN identities i ON i.contact_id = c.contact_id
           WHERE i.address = $1 AND m.content->>'event' = 'reply_not_sent'""", opted_out) == 1
    widest = await pool.fetchval(
        """SELECT max(n) FROM (SELECT count(DISTINCT conversation_id) AS n FROM messages
                               WHERE direction = 'in' AND body = 'hi' GROUP BY processed_at) b""")
    assert widest > 1, "the turns were not taken in one batch"


async def test_a_batch_of_first_turns_costs_a_few_statements_per_turn(settings, pool, clean, redis_client,
                                                                     monkeypatch):
    """What a round reads and writes for all its turns at once stays shared: a round of 20 first
    turns ("hi": the bot greets, a flow timer is set) runs no statement of its own per turn, about
    15 for the round (BEGIN, the locks with the messages, the rows with the contacts' attributes,
    the journeys' look-up, the routing facts' four, the ids of the new episodes and messages taken
    ahead (two), the deferred writes of the episodes, the replies with their outbox rows, the
    conversation rows and the timers (one pipelined statement each), the mark), in asyncpg's query
    log. Before the routing facts and the deferred writes a first turn ran about 13; before the ids
    taken ahead, 2 per turn plus 13."""
    from gateway.pipeline.processor import Processor

    rounds: list[tuple[int, int]] = []     # (messages processed, statements run)
    original = Processor._round

    async def counted(self, conn, conversation_ids):
        queries: list[str] = []
        def logger(record):    # asyncpg's own type introspection (first use of a type) left out
            if "typeinfo_tree" not in record.query and "set_config('jit'" not in record.query:
                queries.append(record.query)
        conn.add_query_logger(logger)
        try:
            taken = await original(self, conn, conversation_ids)
        finally:
            conn.remove_query_logger(logger)
        rounds.append((taken.done, len(queries)))
        return taken

    monkeypatch.setattr(Processor, "_round", counted)
    customers = [f"+1415558{n:04d}" for n in range(20)]
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="flow", flows_dir=FLOWS, twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                           twilio_api_base=fake.base_url, worker_batch=20)
        async with running_gateway(s, roles=("http",)) as (rt, url):   # all queued before a worker starts
            for customer in customers:
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, OUR, "hi"), fake.auth_token)
                assert status == 200
        async with running_gateway(s, roles=("http", "worker")):
            async def all_done():
                return await pool.fetchval(DONE) == len(customers)
            await wait_for(all_done, timeout=30, message="not every message was processed")
    done = sum(n for n, _ in rounds)
    statements = sum(q for _, q in rounds)
    assert done == len(customers)
    assert max(n for n, _ in rounds) > 1, rounds
    assert statements <= 16 * len([r for r in rounds if r[0]]), rounds


async def test_a_round_of_first_turns_writes_episodes_and_entries_taken_ahead_before_anything_reads_them(
        settings, pool, clean, redis_client):
    """In a batch round a new episode and the entries a turn appends are written at the round's end
    with ids taken ahead, unless something reads them first: a no-bot inbox escalates each first
    turn (its episode, not yet written, is marked escalated) and STOP in the same round records
    its opt-out and answers. Every episode exists, is escalated once, holds its customer message,
    and every thread's seqs run 1, 2, ... with no gap."""
    customers = [f"+1415557{n:04d}" for n in range(12)]
    stopper = "+14155579999"
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="agent", twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                           twilio_api_base=fake.base_url, worker_batch=20)
        async with running_gateway(s, roles=("http",)) as (rt, url):   # all queued before a worker starts
            for customer, body in [(c, "hello, I need help") for c in customers] + [(stopper, "STOP")]:
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, OUR, body), fake.auth_token)
                assert status == 200
        async with running_gateway(s, roles=("http", "worker")):
            async def all_done():
                return await pool.fetchval(DONE) == len(customers) + 1
            await wait_for(all_done, timeout=30, message="not every message was processed")
            async def stop_answered():
                return [r for r in fake.requests if r.method == "POST" and r.value("To") == stopper] or None
            answer = await wait_for(stop_answered, timeout=30)
    assert len(answer) == 1 and "reply start to resubscribe" in answer[0].value("Body").lower()
    widest = await pool.fetchval(
        """SELECT max(n) FROM (SELECT count(DISTINCT conversation_id) AS n FROM messages
                               WHERE direction = 'in' GROUP BY processed_at) b""")
    assert widest > 1, "the turns were not taken in one batch"
    rows = await pool.fetch(
        """SELECT i.address, c.mode, c.current_episode_id, e.id AS episode, e.escalation_reason,
                  e.escalated_at IS NOT NULL AS escalated, m.episode_id AS message_episode
           FROM conversations c JOIN identities i ON i.contact_id = c.contact_id
           LEFT JOIN episodes e ON e.id = c.current_episode_id
           JOIN messages m ON m.conversation_id = c.id AND m.direction = 'in'""")
    assert {r["address"] for r in rows} == set(customers) | {stopper}
    for r in rows:
        assert r["episode"] is not None and r["message_episode"] == r["episode"], dict(r)
        if r["address"] == stopper:
            continue
        assert (r["mode"], r["escalated"], r["escalation_reason"]) == ("agent", True, "no_bot"), dict(r)
    assert await pool.fetchval("SELECT count(*) FROM episodes") == len(customers) + 1
    gaps = await pool.fetch(
        """SELECT conversation_id, array_agg(seq ORDER BY seq) AS seqs, max(seq) AS top, count(*) AS n
           FROM messages GROUP BY conversation_id HAVING max(seq) <> count(*) OR min(seq) <> 1""")
    assert gaps == []
    assert await pool.fetchval("""SELECT count(*) FROM conversations c WHERE last_seq <>
                                  (SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id)""") == 0
    assert await pool.fetchval("SELECT granted FROM consents WHERE address = $1 AND purpose = 'all'", stopper) is False
