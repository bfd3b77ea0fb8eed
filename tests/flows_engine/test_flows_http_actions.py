"""The business-API actions over real HTTP to a local aiohttp server: success, 404, 500, timeout, refused."""
import asyncio
import socket
import textwrap
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web

from gateway.flows import ActionContext, ConversationState, Engine, FlowRegistry, TurnInput

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=timezone.utc)
FLOW = """
name: orders
start: ask
slots:
  order_number: {type: order_number, prompt: "Order number?"}
states:
  ask:
    collect: order_number
    goto: lookup
  lookup:
    do:
      - http_get_order_status: {timeout: 0.3}
    on:
      - result: not_found
        goto: missing
      - result: action_failed
        goto: broken
    goto: found
  found:
    say: "{order_number}: {order.status}, ETA {order.eta}"
    goto: ask
  missing:
    say: "No order {order_number}."
    goto: ask
  broken:
    say: "Lookup is down."
    goto: ask
"""


@pytest.fixture
async def business_api():
    calls = []

    async def order(request):
        calls.append((request.method, request.path))
        number = request.match_info["number"]
        if number == "AB12345":
            return web.json_response({"status": "shipped", "eta": "2024-05-08"})
        if number == "ER50000":
            return web.json_response({"error": "boom"}, status=500)
        if number == "NU00001":   # what PostgreSQL cannot store in the slots
            return web.Response(text='{"status": "ship\\u0000ped", "eta": "\\ud800"}', content_type="application/json")
        if number == "NA00001":
            return web.Response(text='{"status": NaN, "eta": ' + "[" * 3000 + "]" * 3000 + "}",
                                content_type="application/json")
        if number == "SL00001":
            await asyncio.sleep(2)
            return web.json_response({"status": "late"})
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/orders/{number}", order)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", calls
    await runner.cleanup()


@pytest.fixture
def engine(tmp_path):
    (tmp_path / "orders.yaml").write_text(textwrap.dedent(FLOW))
    return Engine(FlowRegistry.from_directory(tmp_path, default_flow="orders"))


async def ask(engine, base, text):
    state = ConversationState("orders", engine.registry.get("orders").version, "ask")
    async with aiohttp.ClientSession() as session:
        ctx = ActionContext(session=session, settings={"business_api_base": base})
        return await engine.turn(state, TurnInput(text=text, now=NOW), ctx)


async def test_success_saves_the_json_and_answers(engine, business_api):
    base, calls = business_api
    r = await ask(engine, base, "ab-12345")
    assert [x.text for x in r.replies] == ["AB12345: shipped, ETA 2024-05-08", "Order number?"]
    assert r.state.slots["order"] == {"status": "shipped", "eta": "2024-05-08"}
    assert calls == [("GET", "/orders/AB12345")]


async def test_an_unstorable_answer_is_cleaned_or_fails_the_action(engine, business_api):
    """The answer lands in the conversation's slots (jsonb): NUL and lone surrogates are cleaned;
    NaN or absurd nesting fail the action (branch action_failed) instead of every later turn."""
    base, _ = business_api
    r = await ask(engine, base, "NU00001")
    assert r.state.slots["order"] == {"status": "shipped", "eta": "\ufffd"}
    r = await ask(engine, base, "NA00001")
    assert r.replies[0].text == "Lookup is down."


async def test_404_branches_to_not_found(engine, business_api):
    base, _ = business_api
    r = await ask(engine, base, "ZZ99999")
    assert r.replies[0].text == "No order ZZ99999."


async def test_500_branches_to_action_failed(engine, business_api):
    base, _ = business_api
    r = await ask(engine, base, "ER50000")
    assert r.replies[0].text == "Lookup is down." and r.escalation is None


async def test_timeout_branches_to_action_failed(engine, business_api):
    base, calls = business_api
    started = asyncio.get_running_loop().time()
    r = await ask(engine, base, "SL00001")
    assert r.replies[0].text == "Lookup is down."
    assert asyncio.get_running_loop().time() - started < 1.5
    assert calls == [("GET", "/orders/SL00001")]


async def test_connection_refused_and_missing_setting_branch_too(engine):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = await ask(engine, f"http://127.0.0.1:{port}", "AB12345")
    assert r.replies[0].text == "Lookup is down."
    r = await ask(engine, "", "AB12345")
    assert r.replies[0].text == "Lookup is down."


async def test_unhandled_failure_escalates_instead_of_raising(tmp_path, business_api):
    base, _ = business_api
    text = textwrap.dedent(FLOW).replace("""      - result: action_failed
        goto: broken
""", "").replace("""  broken:
    say: "Lookup is down."
    goto: ask
""", "")
    (tmp_path / "orders.yaml").write_text(text)
    engine = Engine(FlowRegistry.from_directory(tmp_path, default_flow="orders"))
    r = await ask(engine, base, "ER50000")
    assert r.escalation is not None and r.escalation.reason == "action_failed"


@pytest.fixture
async def recording_api():
    """A business API that records the path and the Authorization header of each call."""
    seen = []

    async def order(request):
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"status": "shipped", "eta": "2024-05-08"})

    app = web.Application()
    app.router.add_get("/orders/{number}", order)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", seen
    await runner.cleanup()


async def turn_with(tmp_path, flow: str, text: str, **ctx_kwargs):
    """One turn of `flow` (from the state ask) with an ActionContext of `ctx_kwargs`."""
    (tmp_path / "orders.yaml").write_text(textwrap.dedent(flow))
    engine = Engine(FlowRegistry.from_directory(tmp_path, default_flow="orders"))
    state = ConversationState("orders", engine.registry.get("orders").version, "ask")
    async with aiohttp.ClientSession() as session:
        ctx = ActionContext(session=session, **ctx_kwargs)
        return await engine.turn(state, TurnInput(text=text, now=NOW), ctx), ctx


async def test_the_business_api_token_goes_to_the_business_api_only(tmp_path, recording_api):
    from gateway.flows.actions import _business_auth

    base, seen = recording_api
    flow = FLOW.replace('say: "{order_number}: {order.status}, ETA {order.eta}"',
                        'say: "{order_number}: {order.status} {business_api_token}"')
    r, ctx = await turn_with(tmp_path, flow, "AB-12345", settings={"business_api_base": base},
                             business_api_token="s3cret")
    assert seen == [("/orders/AB12345", "Bearer s3cret")]
    assert "s3cret" not in r.replies[0].text and "s3cret" not in repr(ctx)
    assert _business_auth(ctx, "http://elsewhere.example/orders/1") == {}
    assert _business_auth(ctx, base + ".evil.example/x") == {}


async def test_an_order_number_can_keep_its_dashes(tmp_path, recording_api):
    base, seen = recording_api
    flow = FLOW.replace('order_number: {type: order_number, prompt: "Order number?"}',
                        'order_number: {type: order_number, prompt: "Order number?", keep_separators: true}')
    r, _ = await turn_with(tmp_path, flow, "it's ab-12345", settings={"business_api_base": base})
    assert seen == [("/orders/AB-12345", None)]
    assert r.replies[0].text.startswith("AB-12345: shipped")
