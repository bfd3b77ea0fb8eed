"""Engine turns on small inline flows: slots, escalation, timers, guards, events, versions, hand-back."""
import gc
import textwrap
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
from transitions import Machine

from gateway.domain.types import Channel
from gateway.flows import (ActionContext, ActionRegistry, ConversationState, Engine, FlowError, FlowRegistry, TurnInput,
                           UnknownFlowVersion, hand_back)

MONDAY = datetime(2024, 5, 6, 10, 0, tzinfo=timezone.utc)
SATURDAY = datetime(2024, 5, 11, 13, 0, tzinfo=timezone.utc)

SIGNUP = """
name: signup
start: menu
global:
  misunderstanding_limit: 3
  fallback: "Pardon?"
  handoff: {message: "A person will take over.", team: sales}
  business_hours: {timezone: Europe/Berlin, monday: "09:00-17:00", tuesday: "09:00-17:00"}
  out_of_hours_message: "We are back {when} ({timezone})."
  timeout:
    - after: 10m
      say: "Still there?"
    - after: 20m
      goto: bye
  on:
    - event: vip_upgraded
      do: [{set_attribute: {vip: true}}]
      say: "You are VIP now!"
intents:
  subscribe:
    examples: [i want to subscribe, sign me up, newsletter]
  pricing:
    examples: [how much does it cost, pricing]
slots:
  email:
    type: email
    prompt: "Your email?"
    reprompt: "That is not an email address. Your email?"
    max_attempts: 2
  phone:
    type: phone
    region: DE
    prompt: "Your phone?"
    max_attempts: 2
    on_fail: menu
  day:
    type: date
    prompt: "Which day?"
states:
  menu:
    say: "Welcome!"
    options:
      - {id: sub, title: "Subscribe", goto: ask_email}
      - {id: call, title: "Call me back", goto: ask_phone}
    on:
      - intent: subscribe
        goto: ask_email
      - intent: pricing
        when: is_vip
        say: "For you: free."
      - intent: pricing
        when: {attributes.country: {in: [DE, AT]}}
        say: "9 EUR a month."
      - intent: pricing
        say: "10 USD a month."
  ask_email:
    collect: email
    goto: ask_day
    cancel: menu
  ask_day:
    collect: day
    goto: confirm
  confirm:
    say: "Subscribed {email} from {day}."
    do:
      - tag: subscribed
      - emit_event: {name: subscribed, data: {email: "{email}"}}
    goto: menu
  ask_phone:
    collect: phone
    goto: callback
  callback:
    say: "We'll call {phone}."
    do:
      - escalate: {reason: callback_requested}
  bye:
    say: "Bye."
    do: [end]
"""


def is_vip(view):
    return bool(view.attributes.get("vip"))


@pytest.fixture
def actions():
    registry = ActionRegistry.default()
    registry.register_guard("is_vip", is_vip)
    return registry


@pytest.fixture
def engine(tmp_path, actions):
    (tmp_path / "signup.yaml").write_text(textwrap.dedent(SIGNUP))
    registry = FlowRegistry.from_directory(tmp_path, default_flow="signup", guards=actions.guards)
    return Engine(registry, actions)


CTX = ActionContext()


async def say(engine, state, text, now=MONDAY, **kw):
    return await engine.turn(state, TurnInput(text=text, now=now, **kw), CTX)


def texts(result):
    return [r.text for r in result.replies]


async def test_start_greets_with_buttons_and_timers(engine):
    result = engine.start(now=MONDAY)
    assert result.state.state == "menu" and result.state.flow == "signup"
    assert texts(result) == ["Welcome!"]
    assert [b.id for b in result.replies[0].buttons] == ["sub", "call"]
    assert [(t.name, t.delay) for t in result.timers] == [("menu:1", timedelta(minutes=10)),
                                                          ("menu:2", timedelta(minutes=20))]


async def test_slots_collect_validate_and_reprompt(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "sign me up")
    assert r.state.state == "ask_email" and texts(r) == ["Your email?"] and r.matched_intent == "subscribe"
    assert r.cancel_timers == ("menu:1", "menu:2")
    r = await say(engine, r.state, "my mail is bob at example")
    assert texts(r) == ["That is not an email address. Your email?"]
    assert r.state.state == "ask_email" and r.state.attempts == 1
    r = await say(engine, r.state, "It's Bob@Example.COM")
    assert r.state.slots["email"] == "bob@example.com" and r.state.state == "ask_day"
    r = await say(engine, r.state, "tomorrow")
    assert r.state.slots["day"] == "2024-05-07"
    assert texts(r) == ["Subscribed bob@example.com from 2024-05-07.", "Welcome!"]
    assert r.tags == ("subscribed",)
    assert r.events == (("subscribed", {"email": "bob@example.com"}),)
    assert r.state.state == "menu"


@pytest.mark.parametrize("answer, expected", [("2024-06-01", "2024-06-01"), ("01.06.2024", "2024-06-01"),
                                              ("June 1st, 2024", "2024-06-01"), ("heute", "2024-05-06")])
async def test_date_formats(engine, answer, expected):
    state = ConversationState("signup", engine.registry.get("signup").version, "ask_day", {"email": "a@b.de"})
    r = await say(engine, state, answer)
    assert r.state.slots["day"] == expected


async def test_reprompt_limit_escalates_by_default(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "1")
    r = await say(engine, r.state, "nope")
    assert r.escalation is None
    r = await say(engine, r.state, "still nope")
    assert r.escalation is not None and r.escalation.reason == "slot_failed"
    assert "email" in r.escalation.summary and r.escalation.team == "sales"


async def test_reprompt_limit_can_go_to_a_state_and_phone_is_e164(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "call me back")
    assert r.state.state == "ask_phone"
    r = await say(engine, r.state, "030 1234567")
    assert r.state.slots["phone"] == "+49301234567"
    assert r.escalation.reason == "callback_requested"
    assert texts(r) == ["We'll call +49301234567.", "A person will take over."]
    r = await say(engine, (await say(engine, state, "2")).state, "123")
    r = await say(engine, r.state, "abc")
    assert r.state.state == "menu" and r.escalation is None and texts(r)[-1] == "Welcome!"


async def test_cancel_and_back(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "1")
    r = await say(engine, r.state, "a@b.de")
    assert r.state.state == "ask_day" and r.state.history == ("menu", "ask_email")
    r = await say(engine, r.state, "back")
    assert r.state.state == "ask_email" and texts(r) == ["Your email?"]
    r = await say(engine, r.state, "cancel")
    assert r.state.state == "menu" and texts(r) == ["Welcome!"]


async def test_explicit_request_for_a_person_in_and_out_of_hours(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "I need a real person")
    assert r.escalation.reason == "customer_request" and not r.escalation.out_of_hours
    assert texts(r) == ["A person will take over."]
    assert r.cancel_timers == ("menu:1", "menu:2") and r.timers == ()
    r = await say(engine, state, "humano por favor", now=SATURDAY)
    assert r.escalation.out_of_hours
    assert texts(r) == ["We are back Monday at 09:00 (Europe/Berlin)."]
    assert r.escalation.next_open == datetime(2024, 5, 13, 9, 0, tzinfo=r.escalation.next_open.tzinfo)
    assert "Out of hours" in r.escalation.summary


async def test_consecutive_misunderstandings_escalate_and_understanding_resets(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "blorp")
    assert texts(r) == ["Pardon?", "Welcome!"] and r.state.misunderstandings == 1
    r = await say(engine, r.state, "zzz")
    assert r.state.misunderstandings == 2 and r.escalation is None
    r2 = await say(engine, r.state, "pricing")
    assert r2.state.misunderstandings == 0
    r = await say(engine, r.state, "qqq")
    assert r.escalation.reason == "misunderstood"
    assert "3 times" in r.escalation.summary


async def test_guards_declarative_and_named(engine):
    state = engine.start(now=MONDAY).state
    assert texts(await say(engine, state, "how much does it cost")) == ["10 USD a month."]
    assert texts(await say(engine, state, "pricing", attributes={"country": "DE"})) == ["9 EUR a month."]
    assert texts(await say(engine, state, "pricing", attributes={"vip": True, "country": "DE"})) == ["For you: free."]


async def test_business_event_and_attribute_updates(engine):
    state = engine.start(now=MONDAY).state
    r = await engine.turn(state, TurnInput(event="vip_upgraded", now=MONDAY), CTX)
    assert texts(r) == ["You are VIP now!"] and r.attribute_updates == {"vip": True}
    assert r.state.state == "menu"
    r = await engine.turn(state, TurnInput(event="unknown_event", now=MONDAY), CTX)
    assert r.replies == () and r.state == state


async def test_timeouts_remind_then_leave_and_stale_timers_are_ignored(engine):
    state = engine.start(now=MONDAY).state
    r = await engine.turn(state, TurnInput(event="timeout:menu:1", now=MONDAY), CTX)
    assert texts(r) == ["Still there?"] and r.timers == () and r.cancel_timers == ()
    r = await engine.turn(r.state, TurnInput(event="timeout:menu:2", now=MONDAY), CTX)
    assert texts(r) == ["Bye."] and r.ended and r.cancel_timers == ("menu:1", "menu:2")
    stale = await engine.turn(state, TurnInput(event="timeout:ask_email:1", now=MONDAY), CTX)
    assert stale.replies == () and stale.state == state and stale.timers == ()


async def test_a_customer_message_restarts_the_timers(engine):
    state = engine.start(now=MONDAY).state
    r = await say(engine, state, "pricing")
    assert [t.name for t in r.timers] == ["menu:1", "menu:2"] and r.cancel_timers == ()


async def test_failing_python_action_becomes_a_branch_not_an_exception(tmp_path):
    text = """
    name: boom
    start: s
    states:
      s:
        say: "go?"
        on:
          - else: true
            goto: work
      work:
        do: [explode]
        on:
          - result: action_failed
            goto: sorry
        goto: s
      sorry:
        say: "That failed."
        do: [end]
    """
    (tmp_path / "boom.yaml").write_text(textwrap.dedent(text))
    actions = ActionRegistry.default()

    async def explode(call):
        raise RuntimeError("kaput")
    actions.register("explode", explode)
    engine = Engine(FlowRegistry.from_directory(tmp_path, default_flow="boom", actions=actions.action_names()),
                    actions)
    r = await say(engine, engine.start(now=MONDAY).state, "yes")
    assert texts(r) == ["That failed."] and r.ended


async def test_old_version_keeps_working_after_a_new_one(engine):
    registry = engine.registry
    old = registry.get("signup")
    state = (await say(engine, engine.start(now=MONDAY).state, "1")).state
    assert state.version == old.version
    new_text = textwrap.dedent(SIGNUP).replace('    say: "Welcome!"', '    say: "Hello v2!"') \
        .replace("Subscribed {email} from {day}.", "v2: all set.")
    new = registry.add_version("signup", new_text, current=True)
    assert new.version != old.version and registry.get("signup") is new
    r = await say(engine, state, "a@b.de")
    r = await say(engine, r.state, "tomorrow")
    assert r.state.version == old.version
    assert texts(r) == ["Subscribed a@b.de from 2024-05-07.", "Welcome!"]      # still the old definition
    assert texts(engine.start(now=MONDAY)) == ["Hello v2!"]
    with pytest.raises(UnknownFlowVersion):
        await say(engine, ConversationState("signup", "deadbeef0000", "menu"), "hi")
    assert registry.add_version("signup", new_text) is new                     # idempotent


async def test_hand_back_validates_and_resumes(engine):
    flow = engine.registry.get("signup")
    conv = hand_back(flow, "ask_email", {"x": 1})
    assert conv.state == "ask_email" and conv.slots == {"x": 1} and conv.misunderstandings == 0
    with pytest.raises(FlowError, match="no such state"):
        hand_back(flow, "nowhere")
    r = engine.resume_at(conv, "menu", now=MONDAY)
    assert r.state.state == "menu" and texts(r) == ["Welcome!"] and [t.name for t in r.timers] == ["menu:1", "menu:2"]


async def test_begin_answers_the_first_message_directly(engine):
    r = await engine.begin(TurnInput("sign me up", now=MONDAY, channel=Channel.SMS), CTX)
    assert texts(r) == ["Your email?"] and r.state.state == "ask_email"
    r = await engine.begin(TurnInput("hello", now=MONDAY), CTX)
    assert texts(r) == ["Welcome!"] and r.state.misunderstandings == 0


async def test_state_round_trips_as_plain_data(engine):
    r = await say(engine, engine.start(now=MONDAY).state, "1")
    assert ConversationState.from_dict(r.state.to_dict()) == r.state


async def test_no_machine_per_conversation_and_no_memory_growth(engine, monkeypatch):
    flow = engine.registry.get("signup")
    built = []
    original_init = Machine.__init__

    def counting_init(self, *args, **kwargs):     # a spy: any Machine (or subclass) built during the turns
        built.append(type(self))
        original_init(self, *args, **kwargs)
    monkeypatch.setattr(Machine, "__init__", counting_init)
    messages = ["hi", "1", "pricing", "blorp", "a@b.de", "tomorrow", "2", "cancel"]
    states = ["menu", "ask_email", "ask_day", "ask_phone"]

    def machines():
        return sum(isinstance(o, Machine) for o in gc.get_objects())

    async def drive(n, offset):
        for i in range(offset, offset + n):
            conv = ConversationState("signup", flow.version, states[i % 4], {"n": i})
            await say(engine, conv, messages[i % len(messages)])

    await drive(200, 0)                       # warm caches
    gc.collect()
    before_machines = machines()
    tracemalloc.start()
    await drive(500, 200)
    gc.collect()
    first = tracemalloc.get_traced_memory()[0]
    await drive(2000, 700)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert built == [] and machines() == before_machines
    assert flow.machine.models == []           # no conversation left attached to the shared machine
    assert after - first < 64 * 1024, f"engine memory grew by {after - first} bytes over 2000 conversations"
