"""The one `transitions` machine per flow version, and how a turn borrows it.

The machine is built with `model=None`: it holds states and transitions (with their guards) but no
conversation. For a decision the engine makes a three-slot `TurnModel` carrying the conversation's
current state and a read-only view of its data, fires an event on it, and drops it. Nothing about
the conversation stays in the machine (no add_model, no per-conversation machine, no queue).

When the machine's first transition for the event from the current state has no guard, firing it
can only take that transition (the machine has no other callbacks than the recorder of the trigger),
so `decide` answers from the machine's transition table without building the model, the guard view
and transitions' per-event objects: most decisions of a turn are such.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from transitions import Machine

from gateway.flows.model import Condition, Flow, Trigger

# transitions logs every callback of every turn at DEBUG/INFO; the engine's own trace (TurnResult.debug)
# says the same per conversation, so keep the library's logger to warnings.
logging.getLogger("transitions").setLevel(logging.WARNING)


@dataclass(frozen=True)
class GuardView:
    """What guards may look at during one turn."""

    slots: Mapping[str, Any]
    attributes: Mapping[str, Any]
    channel: Any
    now: datetime | None
    guards: Mapping[str, Callable[["GuardView"], bool]]

    def lookup(self, path: str) -> Any:
        if path.startswith("attributes."):
            return dig(self.attributes, path[len("attributes."):])
        if path == "channel":
            return getattr(self.channel, "value", self.channel)
        return dig(self.slots, path)


class TurnModel:
    """The lightweight model attached to the shared machine for one decision."""

    __slots__ = ("state", "view", "fired")

    def __init__(self, state: str, view: GuardView):
        self.state = state
        self.view = view
        self.fired: Trigger | None = None


def dig(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda a, b: a == b,
    "not": lambda a, b: a != b,
    "in": lambda a, b: a in (b or ()),
    "not_in": lambda a, b: a not in (b or ()),
    "exists": lambda a, b: (a is not None) == bool(b),
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "contains": lambda a, b: a is not None and b in a,
}
OPERATORS = tuple(_OPS)


def _condition_check(cond: Condition) -> Callable:
    if cond.guard:
        name = cond.guard

        def check(event) -> bool:
            guard = event.model.view.guards.get(name)
            return bool(guard and guard(event.model.view))
    else:
        op, path, expected = _OPS[cond.op], cond.path, cond.value

        def check(event) -> bool:
            try:
                return bool(op(event.model.view.lookup(path), expected))
            except TypeError:       # e.g. comparing None or a str with a number
                return False
    return check


def _recorder(trigger: Trigger) -> Callable:
    def record(event) -> None:
        event.model.fired = trigger
    return record


_TRIGGER = "flow_trigger"   # attribute of each transitions.Transition: the Trigger it records


def build_machine(flow: Flow) -> Machine:
    """Local triggers are added before global ones, so a state's own handling wins. The only callback is
    each transition's recorder of its trigger (`decide` relies on it)."""
    machine = Machine(model=None, states=list(flow.states), initial=flow.start, auto_transitions=False,
                      send_event=True, ignore_invalid_triggers=True, name=f"{flow.name}@{flow.version}")

    def add(trigger: Trigger, source: str) -> None:
        machine.add_transition(trigger.event_name, source, trigger.goto,
                               conditions=[_condition_check(c) for c in trigger.when],
                               after=_recorder(trigger))
        setattr(machine.events[trigger.event_name].transitions[source][-1], _TRIGGER, trigger)

    for state in flow.states.values():
        for trigger in state.on + state.timeouts:
            add(trigger, state.name)
        if state.done is not None:
            add(state.done, state.name)
    for state in flow.states.values():
        if state.final:
            continue
        cancel_to = state.cancel or flow.config.cancel_state or flow.start
        add(Trigger("cancel", goto=cancel_to), state.name)
        for trigger in flow.config.on:
            add(trigger, state.name)
    return machine


def decide(flow: Flow, state: str, event_name: str,
           view: GuardView | Callable[[], GuardView]) -> Trigger | None:
    """Fire `event_name` from `state` on the shared machine; the trigger that fired, if any.

    `view` may be a function making the GuardView: it is only called when a guard has to be checked."""
    event = flow.machine.events.get(event_name)
    if event is None:
        return None
    transitions = event.transitions.get(state)
    if not transitions:
        return None
    first = transitions[0]
    trigger = getattr(first, _TRIGGER, None)
    if trigger is not None and not first.conditions and not first.prepare and not first.before \
            and len(first.after) == 1:
        return trigger                          # an unguarded transition: firing can only take it
    model = TurnModel(state, view if isinstance(view, GuardView) else view())
    if event.trigger(model):
        return model.fired
    return None
