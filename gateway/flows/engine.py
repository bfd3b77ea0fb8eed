"""The conversation-flow engine: one turn in, the decision and its effects out.

Pure with respect to storage: the caller (the worker) loads a `ConversationState` (plain data), calls
`Engine.turn`, and writes the `TurnResult` (new state, replies, timers, escalation, attribute
updates, events) in its own transaction. The engine keeps nothing per conversation; decisions run on
the flow version's shared `transitions` machine (see gateway.flows.machine). The only I/O is inside
named actions, through the `ActionContext` the caller passes in.

Order in which a customer message is understood, in the conversation's current state:
1. a tapped button (reply_id) or a menu answer ("2", "two", "second", the option id, its title);
2. the handoff intent ("agent", "real person", "humano", ...): the state's own trigger, else escalation;
3. "cancel" / "back" (as the whole message);
4. a value for the slot being collected;
5. the state's intents, then the flow's global ones;
6. the state's `else`;
7. otherwise a misunderstanding: the fallback and the question again, escalation after N in a row.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Coroutine, Mapping, TypeVar

from gateway.domain.types import Button, Channel
from gateway.flows.actions import FAILED, OK, ActionCall, ActionContext, ActionRegistry, TurnEffects, render_template
from gateway.flows.loader import FlowRegistry
from gateway.flows.machine import GuardView, decide
from gateway.flows.model import Flow, FlowError, Say, StateDef, Trigger
from gateway.flows.nlu import (BACK_WORDS, CANCEL_WORDS, HANDOFF_INTENT, Message, is_control, match_intent,
                               match_option, normalize)
from gateway.flows.slots import EXTRACTABLE, parse_slot

MAX_STEPS = 25          # transitions per turn before the flow is declared looping
HISTORY_LIMIT = 10      # states remembered for "back"


@dataclass(frozen=True)
class ConversationState:
    """A conversation's place in a flow: plain, JSON-able data the worker stores (see to_dict)."""

    flow: str
    version: str
    state: str
    slots: Mapping[str, Any] = field(default_factory=dict)
    misunderstandings: int = 0
    history: tuple[str, ...] = ()        # previous states, for "back"
    attempts: int = 0                    # invalid answers to the slot being collected

    def to_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "version": self.version, "state": self.state, "slots": dict(self.slots),
                "misunderstandings": self.misunderstandings, "history": list(self.history),
                "attempts": self.attempts}

    def new_episode(self) -> "ConversationState":
        """The same place in the flow with the per-episode counters reset (a new episode starts)."""
        return replace(self, misunderstandings=0, attempts=0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConversationState":
        return cls(data["flow"], data["version"], data["state"], dict(data.get("slots") or {}),
                   int(data.get("misunderstandings", 0)), tuple(data.get("history") or ()),
                   int(data.get("attempts", 0)))


@dataclass(frozen=True)
class TurnInput:
    """One thing that happened: a customer message (text and/or a tapped button's reply_id), a timer
    firing (event="timeout:<timer name>") or a business event (event="<name>")."""

    text: str = ""
    channel: Channel | None = None
    reply_id: str | None = None
    event: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.now.tzinfo is None:
            raise ValueError("TurnInput.now must be timezone-aware")


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()
    button_label: str | None = None      # WhatsApp list button text when there are more than 3 options


@dataclass(frozen=True)
class TimerRequest:
    """A durable timer to (re)schedule; replaces a pending timer of the same name. When it fires,
    call `turn` with TurnInput(event=f"timeout:{name}")."""

    name: str
    delay: timedelta


@dataclass(frozen=True)
class Escalation:
    reason: str                          # customer_request | misunderstood | slot_failed | flow_step | action_failed
    summary: str                         # short text for the agent: why, intent, slots
    team: str | None = None
    out_of_hours: bool = False
    next_open: datetime | None = None    # when the team is back, if out of hours


@dataclass(frozen=True)
class TurnResult:
    state: ConversationState
    replies: tuple[Reply, ...] = ()
    escalation: Escalation | None = None
    timers: tuple[TimerRequest, ...] = ()
    cancel_timers: tuple[str, ...] = ()
    attribute_updates: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    events: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    ended: bool = False
    matched_intent: str | None = None
    debug: Mapping[str, Any] = field(default_factory=dict)


def hand_back(flow: Flow, state_name: str, slots: Mapping[str, Any] | None = None) -> ConversationState:
    """The state to store when an agent hands the conversation back to the bot at `state_name`."""
    if state_name not in flow.states:
        raise FlowError(f"cannot hand back to {state_name!r}: no such state", file=flow.source)
    return ConversationState(flow.name, flow.version, state_name, dict(slots or {}))


def _waits(state: StateDef) -> bool:
    """Whether the customer is expected to answer in this state (it is worth going "back" to)."""
    return state.collect is not None or (state.done is None and not state.final)


def _reply(say: Say, text: str) -> Reply:
    buttons = tuple(Button(o.id, o.title, o.description) for o in say.options)
    label = say.button_label or ("Options" if len(buttons) > 3 else None)
    return Reply(text, buttons, label if buttons else None)


T = TypeVar("T")


class WouldWait(Exception):
    """A coroutine run by `finish_now` waited on something (I/O)."""


def finish_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that does no I/O to its end at once (no event loop needed): a turn whose
    actions are all plain. WouldWait (the coroutine closed) when it suspends instead."""
    try:
        coro.send(None)
    except StopIteration as finished:
        return finished.value
    coro.close()
    raise WouldWait


class _Stop(Exception):
    """Ends the processing of a turn (escalated, ended, or looping)."""


class _Turn:
    """The working copy of one conversation during one turn. Discarded when the turn ends."""

    def __init__(self, engine: "Engine", flow: Flow, conv: ConversationState | None, inp: TurnInput,
                 ctx: ActionContext):
        self.engine, self.flow, self.inp, self.ctx = engine, flow, inp, ctx
        self.initial = conv.state if conv else None
        self.state = conv.state if conv else None
        self.slots = dict(conv.slots) if conv else {}
        self.misunderstandings = conv.misunderstandings if conv else 0
        self.history = list(conv.history) if conv else []
        self.attempts = conv.attempts if conv else 0
        self.effects = TurnEffects()
        self.escalation: Escalation | None = None
        self.ended = False
        self.entered = False
        self.steps = 0
        self.matched_intent: str | None = None
        self.choice: str | None = None
        self.text = inp.text or ""
        self.normalized = normalize(self.text)
        self.message = Message(self.normalized)
        self.text_used = False
        self.trace: list[str] = []

    # -- plumbing ----------------------------------------------------------------------------------
    @property
    def current(self) -> StateDef:
        return self.flow.state(self.state)

    def attributes(self) -> dict[str, Any]:
        merged = dict(self.ctx.attributes)
        merged.update(self.inp.attributes)
        merged.update(self.effects.attribute_updates)
        return merged

    def view(self) -> GuardView:
        return GuardView(self.slots, self.attributes(), self.inp.channel, self.inp.now, self.engine.actions.guards)

    def render(self, text: str) -> str:
        return render_template(text, self.slots, self.attributes(), self.ctx.settings)

    def say(self, say: Say | None, text: str | None = None) -> None:
        if say is not None:
            self.effects.replies.append(_reply(say, self.render(text or say.text)))
        elif text:
            self.effects.replies.append(Reply(self.render(text)))

    async def fire(self, event_name: str) -> bool:
        trigger = decide(self.flow, self.state, event_name, self.view)   # the view only if guards need it
        if trigger is None:
            return False
        self.trace.append(f"{self.state} --{trigger.event_name}--> {trigger.goto or '(stay)'}")
        await self.follow(trigger)
        return True

    async def follow(self, trigger: Trigger) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.trace.append("loop: too many transitions in one turn")
            await self.escalate("flow_error", "the flow kept moving without waiting for the customer")
        if await self.run_actions(trigger.do):
            return
        self.say(trigger.say)
        await self.hand_over(trigger.do)
        if trigger.goto is not None:
            await self.enter(trigger.goto)

    async def run_actions(self, actions) -> bool:
        """Run actions in order; True when a non-ok result was handled (the flow moved on)."""
        for ref in actions:
            if ref.name == "escalate":   # handed over after the state's own reply: see hand_over
                continue
            if ref.name == "end":
                self.ended = True
                continue
            result = await self.call(ref)
            if result not in (None, OK):
                await self.on_result(result)
                return True
        return False

    async def hand_over(self, actions) -> None:
        for ref in actions:
            if ref.name == "escalate":
                await self.escalate(str(ref.args.get("reason", "flow_step")), ref.args.get("note"))

    async def call(self, ref) -> str | None:
        fn = self.engine.actions.action(ref.name)
        call = ActionCall(ref.name, ref.args, self.slots, self.ctx, self.flow, self.state, self.text, self.choice,
                          self.effects, self.message)
        try:
            result = fn(call)
            if inspect.isawaitable(result):
                result = await result
        except Exception:   # an action's bug must not take the conversation down: branch on it instead
            self.ctx.logger.exception(f"flow action {ref.name} failed")
            result = FAILED
        self.trace.append(f"action {ref.name} -> {result or OK}")
        return result

    async def on_result(self, result: str) -> None:
        if await self.fire(f"result:{result}"):
            return
        if result != FAILED and await self.fire(f"result:{FAILED}"):   # the catch-all branch
            return
        self.say(None, self.flow.config.error_message)
        await self.escalate("action_failed", f"result {result!r} in state {self.state!r} has no branch")

    # -- entering states ---------------------------------------------------------------------------
    async def enter(self, name: str) -> None:
        if self.state is not None and self.state != name and _waits(self.current):
            self.history = (self.history + [self.state])[-HISTORY_LIMIT:]
        self.state = name
        self.attempts = 0
        self.entered = True
        state = self.current
        if await self.run_actions(state.do):
            return
        if state.collect and self.prefill(state):
            await self.fire("done")
            return
        self.say(state.say)
        await self.hand_over(state.do)
        if state.final:
            self.ended = True
        if self.ended:
            raise _Stop
        if any(t.kind == "result" for t in state.on) and await self.fire(f"result:{OK}"):
            return
        if state.done is not None and not state.collect:
            await self.fire("done")

    def prefill(self, state: StateDef) -> bool:
        """Fill the slot from the message that led here ("where is AB12345?"), if it holds a value."""
        slot = self.flow.slots[state.collect]
        if self.inp.event or self.text_used or slot.type not in EXTRACTABLE:
            return False
        value = parse_slot(slot, self.text, self.inp.now)
        if value is None:
            return False
        self.slots[slot.name] = value
        self.text_used = True
        return True

    # -- escalation --------------------------------------------------------------------------------
    async def escalate(self, reason: str, note: str | None = None) -> None:
        config = self.flow.config
        hours = config.business_hours
        now = self.inp.now
        out_of_hours = hours is not None and not hours.is_open(now)
        next_open = hours.next_open(now) if out_of_hours else None
        if out_of_hours:
            values = hours.describe_next_open(now)
            self.effects.replies.append(Reply(config.out_of_hours_message.format_map(_Default(values))))
        else:
            self.effects.replies.append(Reply(self.render(config.handoff.message)))
        summary = self.summary(reason, note, next_open)
        self.escalation = Escalation(reason, summary, config.handoff.team, out_of_hours, next_open)
        raise _Stop

    def summary(self, reason: str, note: str | None, next_open: datetime | None) -> str:
        why = {
            "customer_request": "Customer asked for a person",
            "misunderstood": f"Bot did not understand {self.misunderstandings} times in a row",
            "slot_failed": "Customer could not give a valid answer",
            "action_failed": "A step failed",
            "flow_error": "The flow is broken",
        }.get(reason, "Flow step handed over")
        parts = [f"{why}{': ' + note if note else ''}.", f"Flow {self.flow.name}, state {self.state}."]
        if self.matched_intent:
            parts.append(f"Intent: {self.matched_intent}.")
        shown = [f"{k}={str(v)[:40]}" for k, v in self.slots.items() if not isinstance(v, (dict, list))]
        if shown:
            parts.append("Slots: " + ", ".join(shown) + ".")
        if next_open is not None:
            parts.append(f"Out of hours; team back {next_open.strftime('%a %Y-%m-%d %H:%M')} "
                         f"({self.flow.config.business_hours.timezone}).")
        return " ".join(parts)

    # -- customer messages -------------------------------------------------------------------------
    async def handle_message(self, *, quiet: bool = False) -> bool:
        """Understand the message in the current state; False when nothing matched (quiet: and nothing
        was said or counted)."""
        state = self.current
        option = None
        if self.inp.reply_id:
            option = next((o for o in state.options if o.id == self.inp.reply_id), None)
        if option is None and state.options:
            option = match_option(self.text, self.normalized, state.options, message=self.message)
        if option is not None:
            self.choice = option.id
            if await self.fire(f"choice:{option.id}"):
                self.misunderstandings = 0
                return True
        if not self.normalized:
            return await self.not_understood(quiet)
        handoff = match_intent(self.message, (self.flow.intents[HANDOFF_INTENT],))
        if handoff is not None:
            self.matched_intent = HANDOFF_INTENT
            if not await self.fire(f"intent:{HANDOFF_INTENT}"):
                await self.escalate("customer_request")
            return True
        if is_control(self.normalized, CANCEL_WORDS):
            await self.fire("cancel")
            return True
        if is_control(self.normalized, BACK_WORDS):
            await self.go_back()
            return True
        if state.collect:
            slot = self.flow.slots[state.collect]
            value = parse_slot(slot, self.text, self.inp.now)
            if value is not None:
                self.slots[slot.name] = value
                self.text_used = True
                self.misunderstandings = 0
                await self.fire("done")
                return True
        intent = match_intent(self.message, self.flow.state_intents.get(self.state, ()))
        if intent is not None and await self.fire(f"intent:{intent.intent}"):
            self.matched_intent = intent.intent
            self.misunderstandings = 0
            return True
        if await self.fire("else"):
            self.misunderstandings = 0
            return True
        if state.collect and not quiet:
            await self.invalid_slot_value(state)
            return False
        return await self.not_understood(quiet)

    async def invalid_slot_value(self, state: StateDef) -> None:
        slot = self.flow.slots[state.collect]
        self.attempts += 1
        if self.attempts >= slot.max_attempts:
            if slot.on_fail == "escalate":
                await self.escalate("slot_failed", f"no valid {slot.name} after {self.attempts} tries")
            await self.enter(slot.on_fail)
            return
        self.say(None, slot.reprompt or slot.prompt)

    async def not_understood(self, quiet: bool) -> bool:
        if quiet:
            return False
        self.misunderstandings += 1
        if self.misunderstandings >= self.flow.config.misunderstanding_limit:
            await self.escalate("misunderstood")
        state = self.current
        if state.fallback and state.say:
            self.say(state.say, state.fallback)
        else:
            self.say(None, state.fallback or self.flow.config.fallback)
            self.say(state.say)
        return False

    async def go_back(self) -> None:
        if not self.history:
            self.say(self.current.say)
            return
        target = self.history.pop()
        self.state = None                 # do not push the state we are leaving
        await self.enter(target)

    # -- events ------------------------------------------------------------------------------------
    async def handle_event(self, event: str) -> None:
        if event.startswith("timeout:"):
            _, _, timer = event.partition(":")
            owner, _, index = timer.rpartition(":")
            if owner != self.state:       # the conversation moved on: a stale timer
                self.trace.append(f"stale timer {timer}")
                return
            await self.fire(f"timeout:{index}")
        else:
            if not await self.fire(f"event:{event}"):
                self.trace.append(f"event {event} not handled in {self.state}")

    # -- result ------------------------------------------------------------------------------------
    def result(self) -> TurnResult:
        final = self.current
        old = self.flow.states.get(self.initial) if self.initial else None
        old_names = tuple(old.timer_name(i) for i in range(len(old.timeouts))) if old else ()
        timers: tuple[TimerRequest, ...] = ()
        cancel: tuple[str, ...] = ()
        schedule = tuple(TimerRequest(final.timer_name(i), t.after) for i, t in enumerate(final.timeouts))
        if self.escalation is not None or self.ended:
            cancel = old_names
        elif self.state != self.initial:
            cancel, timers = old_names, schedule
        elif self.entered or self.inp.event is None:
            timers = schedule               # re-entered, or the customer answered: the clock restarts
        conv = ConversationState(self.flow.name, self.flow.version, self.state, self.slots,
                                 self.misunderstandings, tuple(self.history), self.attempts)
        return TurnResult(
            state=conv, replies=tuple(self.effects.replies), escalation=self.escalation, timers=timers,
            cancel_timers=cancel, attribute_updates=dict(self.effects.attribute_updates),
            tags=tuple(self.effects.tags), events=tuple(self.effects.events), ended=self.ended,
            matched_intent=self.matched_intent,
            debug={"trace": tuple(self.trace), "flow": self.flow.name, "version": self.flow.version,
                   "from_state": self.initial, "normalized": self.normalized})


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return ""


class Engine:
    """Runs turns of conversations against the flows of a registry. Holds nothing per conversation."""

    def __init__(self, registry: FlowRegistry, actions: ActionRegistry | None = None):
        self.registry = registry
        self.actions = actions or ActionRegistry.default()

    def start(self, flow_name: str | None = None, *, channel: Channel | None = None,
              entry_point: str | None = None, now: datetime | None = None,
              attributes: Mapping[str, Any] | None = None) -> TurnResult:
        """Enter the start state of the chosen flow (its greeting). Synchronous: a start state must not
        run I/O actions (use `begin` for that)."""
        flow = self.registry.flow_for(channel=channel, entry_point=entry_point, name=flow_name)
        inp = TurnInput(channel=channel, now=now or datetime.now(timezone.utc), attributes=attributes or {})
        return self._enter_sync(flow, None, flow.start, inp)

    def resume_at(self, conv: ConversationState, state_name: str, *, now: datetime | None = None,
                  channel: Channel | None = None) -> TurnResult:
        """After an agent hands back: enter `state_name` (validated) and say its prompt."""
        flow = self.registry.get(conv.flow, conv.version)
        back = hand_back(flow, state_name, conv.slots)
        inp = TurnInput(channel=channel, now=now or datetime.now(timezone.utc))
        return self._enter_sync(flow, replace(back, state=state_name), state_name, inp, fresh=True)

    def _enter_sync(self, flow: Flow, conv: ConversationState | None, state_name: str, inp: TurnInput,
                    fresh: bool = False) -> TurnResult:
        run = _Turn(self, flow, conv, inp, ActionContext())
        if fresh:
            run.state = None
            run.initial = None
        try:
            finish_now(self._guarded(run, run.enter(state_name)))
        except WouldWait:
            raise FlowError("entering this state runs an I/O action; use Engine.begin", file=flow.source,
                            state=state_name) from None
        return run.result()

    async def begin(self, inp: TurnInput, ctx: ActionContext, *, flow_name: str | None = None,
                    entry_point: str | None = None) -> TurnResult:
        """A new conversation's first message: enter the start state, then understand the message
        there. The greeting is kept only when the message itself was not understood ("hi")."""
        flow = self.registry.flow_for(channel=inp.channel, entry_point=entry_point, name=flow_name)
        run = _Turn(self, flow, None, inp, ctx)

        async def first() -> None:
            await run.enter(flow.start)
            if run.state != flow.start or (not run.text.strip() and not inp.reply_id):
                return
            greeting = len(run.effects.replies)
            try:
                handled = await run.handle_message(quiet=True)
            except _Stop:
                handled = True
            if handled:
                del run.effects.replies[:greeting]
        await self._guarded(run, first())
        return run.result()

    async def turn(self, state: ConversationState, inp: TurnInput, ctx: ActionContext) -> TurnResult:
        """Process one input for a conversation at `state`. Raises UnknownFlowVersion when the flow
        version is not loaded (load its stored text with registry.add_version and call again)."""
        flow = self.registry.get(state.flow, state.version)
        run = _Turn(self, flow, state, inp, ctx)
        if state.state not in flow.states:
            raise FlowError(f"conversation is in unknown state {state.state!r}", file=flow.source)
        if inp.event:
            await self._guarded(run, run.handle_event(inp.event))
        else:
            await self._guarded(run, run.handle_message())
        return run.result()

    @staticmethod
    async def _guarded(run: _Turn, coro) -> None:
        try:
            await coro
        except _Stop:
            pass
