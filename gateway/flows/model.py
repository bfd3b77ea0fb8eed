"""Flow definitions as frozen data: what a YAML file in flows/ means once loaded and validated.

Nothing here knows about conversations: a `Flow` is shared by every conversation on it (and owns the
one `transitions.Machine` built for it, see gateway.flows.machine).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from gateway.flows.hours import BusinessHours
from gateway.flows.nlu import IntentModel


class FlowError(Exception):
    """A flow definition is wrong (or a flow/version/state asked for does not exist).

    The message names the file, the state and the problem, e.g.
    ``flows/support.yaml: state 'menu': goto 'nowhere' is not a state``.
    """

    def __init__(self, problem: str, *, file: str | None = None, state: str | None = None):
        self.problem = problem
        self.file = file
        self.state = state
        where = []
        if file:
            where.append(str(file))
        if state:
            where.append(f"state '{state}'")
        super().__init__(": ".join(where + [problem]))


class UnknownFlowVersion(FlowError, LookupError):
    """The registry does not hold this (flow, version): load its stored text with add_version."""

    def __init__(self, name: str, version: str | None):
        self.name = name
        self.version = version
        super().__init__(f"flow {name!r} version {version!r} is not loaded")


_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)")


def parse_duration(value: Any) -> timedelta:
    """"10m", "1h30m", "45s", "2d" or a number of seconds; must be positive."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if not text or _DURATION.sub("", text):
            raise ValueError(f"bad duration {value!r} (use e.g. 30s, 10m, 1h30m, 2d)")
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        seconds = sum(int(n) * units[u] for n, u in _DURATION.findall(text))
    if seconds <= 0:
        raise ValueError(f"bad duration {value!r}: must be positive")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Option:
    id: str
    title: str
    description: str | None = None
    goto: str | None = None


@dataclass(frozen=True)
class Say:
    text: str
    options: tuple[Option, ...] = ()
    button_label: str | None = None


@dataclass(frozen=True)
class ActionRef:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """One guard. `guard` set: a named Python guard. Otherwise compare the value at `path` (a slot,
    a dotted path into a slot, or attributes.NAME) with `op` and `value`."""

    path: str | None = None
    op: str = "equals"
    value: Any = None
    guard: str | None = None

    def describe(self) -> str:
        if self.guard:
            return self.guard
        return f"{self.path} {self.op} {self.value!r}"


@dataclass(frozen=True)
class Trigger:
    """What can happen in a state and what follows.

    kind: intent | choice | event | result | timeout | else | done | cancel.
    `goto` None means stay in the state without re-entering it.
    """

    kind: str
    key: str | None = None
    when: tuple[Condition, ...] = ()
    goto: str | None = None
    say: Say | None = None
    do: tuple[ActionRef, ...] = ()
    after: timedelta | None = None        # timeouts only
    is_global: bool = False

    @property
    def event_name(self) -> str:
        """The trigger's name in the transitions machine."""
        return f"{self.kind}:{self.key}" if self.key is not None else self.kind

    def label(self) -> str:
        if self.kind == "timeout" and self.after is not None:
            text = f"no reply {format_duration(self.after)}"
        else:
            text = self.event_name
        if self.when:
            text += " [" + " and ".join(c.describe() for c in self.when) + "]"
        return text


@dataclass(frozen=True)
class StateDef:
    name: str
    say: Say | None = None
    do: tuple[ActionRef, ...] = ()
    on: tuple[Trigger, ...] = ()
    done: Trigger | None = None           # the state-level goto: after entering / once collected
    collect: str | None = None
    timeouts: tuple[Trigger, ...] = ()
    cancel: str | None = None
    fallback: str | None = None
    final: bool = False
    description: str | None = None

    def timer_name(self, index: int) -> str:
        return f"{self.name}:{index + 1}"

    @property
    def options(self) -> tuple[Option, ...]:
        return self.say.options if self.say else ()


@dataclass(frozen=True)
class SlotDef:
    name: str
    type: str
    prompt: str
    reprompt: str | None = None
    max_attempts: int = 3
    on_fail: str = "escalate"             # a state name, or "escalate"
    pattern: str | None = None
    regex: re.Pattern | None = None
    region: str | None = None             # phone: default region for numbers without +
    min_length: int = 1
    keep_separators: bool = False         # order_number: keep "AB-12345" as typed (upper-cased)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    questions: tuple[str, ...]
    answer: str
    matcher: IntentModel                  # the questions and keywords, ready for matching
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Handoff:
    message: str = "I'm handing you over to a person from our team. They will answer here."
    state: str | None = None              # optional state entered when the customer asks for a person
    team: str | None = None


@dataclass(frozen=True)
class GlobalConfig:
    misunderstanding_limit: int = 3
    fallback: str = "Sorry, I didn't understand that."
    error_message: str = "Sorry, something went wrong on our side."
    handoff: Handoff = Handoff()
    business_hours: BusinessHours | None = None
    out_of_hours_message: str = ("Our team is offline right now. Our team is back {when} ({timezone}); "
                                 "we'll answer you here then.")
    cancel_state: str | None = None
    on: tuple[Trigger, ...] = ()
    timeouts: tuple[Trigger, ...] = ()


@dataclass(eq=False)
class Flow:
    """One loaded version of a flow definition. Shared, never mutated after load."""

    name: str
    version: str
    text: str
    source: str
    description: str
    start: str
    states: Mapping[str, StateDef]
    intents: Mapping[str, IntentModel]
    slots: Mapping[str, SlotDef]
    faq: tuple[FaqEntry, ...]
    config: GlobalConfig
    threshold: float
    machine: Any = None                   # the transitions.Machine, built once by the loader
    state_intents: Mapping[str, tuple[IntentModel, ...]] = field(default_factory=dict)  # candidates per state

    def state(self, name: str) -> StateDef:
        try:
            return self.states[name]
        except KeyError:
            raise FlowError(f"no state {name!r} in flow {self.name!r} version {self.version}",
                            file=self.source) from None

    def __repr__(self) -> str:
        return f"<Flow {self.name}@{self.version} {len(self.states)} states>"
