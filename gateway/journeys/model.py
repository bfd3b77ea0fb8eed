"""Journey definitions: parsing and validation (pure; no I/O beyond the YAML text given).

A journey is a flow entered by a business event, advanced by timers and by delivery/reply events,
and left on its goal event. See flows/journeys/README.md for the YAML format; in short:

    name: cart_recovery
    priority: 10                     # who takes the last frequency-cap slot of a day
    purpose: marketing               # or transactional (no frequency cap)
    entry: {event: cart_abandoned, require: [cart_url], conditions: [...], reentry: {once_per: 7d}}
    goal: {event: order_placed, within: 7d}
    exit_events: [account_closed]
    quiet_hours: {start: "21:00", end: "08:00"}    # or false; default from _policy.yaml
    steps:
      - {id: wait_1h, wait: {duration: 1h}}
      - {id: nudge, send: {template: cart_reminder, channels: [whatsapp, sms, email], fallback_after: 15m}}
      - {id: promo, send: {template: promo, channels: [sms], inbox: Marketing}}   # from that inbox
      - {id: check, branch: {cases: [{if: {happened: replied, step: nudge}, goto: end}], else: next}}
      - {id: ab, split: [{variant: a, weight: 45, goto: nudge}, {variant: holdout, weight: 10, holdout: true}]}
      - {id: tag, update: {attributes: {cart_nudged: true}}}
      - {id: human, escalate: {reason: high_value_cart}}
      - {id: to_bot, flow: {name: support, state: start}}
    templates: {cart_reminder: {...}}   # shared ones (flows/journeys/templates/*.yaml) are folded
                                        # in by the registry before parsing

Everything a send needs is checked here, at load time: templates exist and support every listed
channel, every placeholder is a declared variable, and every variable without a default comes
from an event property the entry requires.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

import yaml

from gateway.domain.events import EVENT_NAME
from gateway.domain.types import Channel
from gateway.journeys.guards import QuietHours
from gateway.journeys.templates import Template, TemplateError, lookup, parse_template

END = "end"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "not_exists", "contains")
HAPPENED = ("sent", "delivered", "read", "replied", "clicked", "failed")
CHANNELS = {"whatsapp": Channel.WHATSAPP, "sms": Channel.SMS, "email": Channel.EMAIL,
            "api": Channel.API, "chat": Channel.WEBCHAT, "webchat": Channel.WEBCHAT}
_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)")


class JourneyError(ValueError):
    """An invalid journey definition; the message names the journey and the offending part."""


def parse_duration(raw: Any, where: str) -> timedelta:
    """'15m', '1h30m', '2d', '90s' or a number of seconds."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return timedelta(seconds=raw)
    text = str(raw).strip().lower().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise JourneyError(f"{where}: {raw!r} is not a duration like 15m, 1h, 2d")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    total = sum(int(n) * unit[u] for n, u in parts)
    if total <= 0:
        raise JourneyError(f"{where}: duration must be positive")
    return timedelta(seconds=total)


def parse_time(raw: Any, where: str) -> time:
    if isinstance(raw, int):  # YAML 1.1 reads 21:00 unquoted as sexagesimal minutes
        return time(raw // 60 % 24, raw % 60)
    try:
        hh, mm = str(raw).strip().split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise JourneyError(f"{where}: {raw!r} is not a time of day like 09:30") from None


@dataclass(frozen=True)
class Condition:
    field: str        # event.x | attributes.x | contact.locale
    op: str
    value: Any = None

    def holds(self, context: Mapping[str, Any]) -> bool:
        actual = lookup(self.field, context)
        op, want = self.op, self.value
        if op == "exists":
            return actual is not None
        if op == "not_exists":
            return actual is None
        if op == "eq":
            return actual == want
        if op == "ne":
            return actual != want
        if op == "in":
            return actual in want
        if op == "not_in":
            return actual not in want
        if op == "contains":
            return isinstance(actual, (str, list)) and want in actual
        try:
            return {"gt": actual > want, "gte": actual >= want, "lt": actual < want,
                    "lte": actual <= want}[op]
        except TypeError:
            return False  # missing or incomparable value: the condition does not hold


def all_hold(conditions: tuple[Condition, ...], context: Mapping[str, Any]) -> bool:
    return all(c.holds(context) for c in conditions)


@dataclass(frozen=True)
class Policy:
    """Guards shared by all journeys (flows/journeys/_policy.yaml)."""

    frequency_cap: int | None = 2              # marketing sends per contact per local day
    quiet_hours: QuietHours | None = QuietHours(time(21), time(8))
    default_timezone: str = "UTC"
    fallback_after: timedelta = timedelta(minutes=15)
    busy_retry: timedelta = timedelta(minutes=30)
    busy_max_wait: timedelta = timedelta(hours=6)
    flow_window: timedelta = timedelta(minutes=30)
    flow_idle_states: frozenset[str] = frozenset({"start", "idle", "end", "done", "ended", "closed"})
    holdout_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class ReEntry:
    policy: str = "never"                     # never | always | once_per
    period: timedelta | None = None


@dataclass(frozen=True)
class Entry:
    event: str
    conditions: tuple[Condition, ...] = ()
    require: tuple[str, ...] = ()             # event properties that must be present
    reentry: ReEntry = ReEntry()
    max_age: timedelta | None = None          # ignore trigger events older than this


@dataclass(frozen=True)
class Goal:
    event: str
    conditions: tuple[Condition, ...] = ()
    within: timedelta | None = None           # holdout observation window


@dataclass(frozen=True)
class Step:
    id: str
    next: str                                 # the following step id, or END


@dataclass(frozen=True)
class WaitStep(Step):
    duration: timedelta | None = None
    until: time | None = None                 # next local time of day
    event: str | None = None                  # an event name, or "replied"
    timeout: timedelta | None = None
    on_event: str | None = None
    on_timeout: str | None = None


@dataclass(frozen=True)
class SendStep(Step):
    template: str = ""
    channels: tuple[Channel, ...] = ()
    fallback_after: timedelta | None = None
    inboxes: tuple[str, ...] = ()      # the inboxes it sends from, by name (the one on the channel used)


@dataclass(frozen=True)
class Case:
    goto: str
    happened: str | None = None
    of_step: str | None = None
    event: str | None = None
    variant: str | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class BranchStep(Step):
    cases: tuple[Case, ...] = ()


@dataclass(frozen=True)
class Arm:
    variant: str
    weight: float
    goto: str | None = None
    holdout: bool = False


@dataclass(frozen=True)
class SplitStep(Step):
    arms: tuple[Arm, ...] = ()


@dataclass(frozen=True)
class UpdateStep(Step):
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EscalateStep(Step):
    reason: str = "journey"
    summary: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class FlowStep(Step):
    flow: str = ""
    state: str = "start"


@dataclass(frozen=True)
class Journey:
    name: str
    version: str
    source: str
    entry: Entry
    steps: Mapping[str, Step]
    first_step: str
    goal: Goal | None = None
    exit_events: tuple[str, ...] = ()
    priority: int = 0
    purpose: str = "marketing"
    description: str = ""
    quiet_hours: QuietHours | None = None
    templates: Mapping[str, Template] = field(default_factory=dict)

    @property
    def is_marketing(self) -> bool:
        return self.purpose == "marketing"


# -- parsing ---------------------------------------------------------------------------------

def parse_policy(data: Any) -> Policy:
    if data is None:
        return Policy()
    if not isinstance(data, dict):
        raise JourneyError("_policy.yaml must be a mapping")
    base = Policy()
    cap = data.get("frequency_cap", base.frequency_cap)
    if cap is not None and cap is not False and (not isinstance(cap, int) or cap < 0):
        raise JourneyError("policy.frequency_cap must be a whole number (or false)")
    return Policy(
        frequency_cap=None if cap is False else cap,
        quiet_hours=_quiet(data.get("quiet_hours", "default"), base.quiet_hours, "policy"),
        default_timezone=str(data.get("default_timezone", base.default_timezone)),
        fallback_after=_dur(data, "fallback_after", base.fallback_after, "policy"),
        busy_retry=_dur(data, "busy_retry", base.busy_retry, "policy"),
        busy_max_wait=_dur(data, "busy_max_wait", base.busy_max_wait, "policy"),
        flow_window=_dur(data, "flow_window", base.flow_window, "policy"),
        flow_idle_states=frozenset(data.get("flow_idle_states", base.flow_idle_states)),
        holdout_window=_dur(data, "holdout_window", base.holdout_window, "policy"),
    )


def _dur(data: dict, key: str, default: timedelta, where: str) -> timedelta:
    return parse_duration(data[key], f"{where}.{key}") if key in data else default


def _quiet(raw: Any, default: QuietHours | None, where: str) -> QuietHours | None:
    if raw == "default":
        return default
    if raw is False or raw is None:
        return None
    if not isinstance(raw, dict) or "start" not in raw or "end" not in raw:
        raise JourneyError(f"{where}.quiet_hours must be {{start: '21:00', end: '08:00'}} or false")
    return QuietHours(parse_time(raw["start"], f"{where}.quiet_hours.start"),
                      parse_time(raw["end"], f"{where}.quiet_hours.end"))


def parse_journey(text: str, *, policy: Policy = Policy()) -> Journey:
    """Parse and validate one journey's YAML text. Raises JourneyError naming the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JourneyError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise JourneyError("a journey must be a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise JourneyError(f"journey name {name!r} must be lowercase letters, digits and _")
    where = f"journey {name!r}"
    known = {"name", "description", "priority", "purpose", "entry", "goal", "exit_events", "quiet_hours",
             "steps", "templates", "version"}
    unknown = set(data) - known
    if unknown:
        raise JourneyError(f"{where}: unknown keys {sorted(unknown)}")
    purpose = data.get("purpose", "marketing")
    if purpose not in ("marketing", "transactional"):
        raise JourneyError(f"{where}: purpose must be marketing or transactional")
    priority = data.get("priority", 0)
    if not isinstance(priority, int):
        raise JourneyError(f"{where}: priority must be a whole number")
    entry = _entry(data.get("entry"), where)
    goal = _goal(data.get("goal"), where) if data.get("goal") is not None else None
    exit_events = tuple(_event_name(e, f"{where}.exit_events") for e in data.get("exit_events") or ())
    templates: dict[str, Template] = {}
    for tname, tdata in (data.get("templates") or {}).items():
        try:
            templates[tname] = parse_template(str(tname), tdata)
        except TemplateError as exc:
            raise JourneyError(f"{where}: {exc}") from None
    steps = _steps(data.get("steps"), where)
    journey = Journey(
        name=name, version=hashlib.sha256(text.encode()).hexdigest()[:12], source=text, entry=entry,
        steps=steps, first_step=next(iter(steps)), goal=goal, exit_events=exit_events, priority=priority,
        purpose=purpose, description=str(data.get("description") or ""),
        quiet_hours=_quiet(data.get("quiet_hours", "default"), policy.quiet_hours, where),
        templates={s.template: templates[s.template] for s in steps.values()
                   if isinstance(s, SendStep) and s.template in templates},
    )
    _validate(journey, templates, where)
    return journey


def _event_name(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not EVENT_NAME.match(raw):
        raise JourneyError(f"{where}: {raw!r} is not an event name")
    return raw


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise JourneyError(f"{where}: conditions must be a list")
    out = []
    for i, c in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(c, dict) or "field" not in c or "op" not in c:
            raise JourneyError(f"{w}: a condition is {{field, op, value}}")
        if not str(c["field"]).startswith(("event.", "attributes.", "contact.")):
            raise JourneyError(f"{w}: field must start with event., attributes. or contact.")
        if c["op"] not in OPS:
            raise JourneyError(f"{w}: op must be one of {', '.join(OPS)}")
        if c["op"] in ("in", "not_in") and not isinstance(c.get("value"), list):
            raise JourneyError(f"{w}: {c['op']} needs a list value")
        out.append(Condition(str(c["field"]), c["op"], c.get("value")))
    return tuple(out)


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict) or "event" not in raw:
        raise JourneyError(f"{where}: entry needs an event")
    reentry_raw = raw.get("reentry", "never")
    if reentry_raw in ("never", "always"):
        reentry = ReEntry(reentry_raw)
    elif isinstance(reentry_raw, dict) and "once_per" in reentry_raw:
        reentry = ReEntry("once_per", parse_duration(reentry_raw["once_per"], f"{where}.entry.reentry.once_per"))
    else:
        raise JourneyError(f"{where}: entry.reentry must be never, always or {{once_per: 7d}}")
    require = raw.get("require") or []
    if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
        raise JourneyError(f"{where}: entry.require must be a list of property names")
    return Entry(event=_event_name(raw["event"], f"{where}.entry.event"),
                 conditions=_conditions(raw.get("conditions"), f"{where}.entry.conditions"),
                 require=tuple(require), reentry=reentry,
                 max_age=parse_duration(raw["max_age"], f"{where}.entry.max_age") if raw.get("max_age") else None)


def _goal(raw: Any, where: str) -> Goal:
    if isinstance(raw, str):
        raw = {"event": raw}
    if not isinstance(raw, dict) or "event" not in raw:
        raise JourneyError(f"{where}: goal needs an event")
    return Goal(event=_event_name(raw["event"], f"{where}.goal.event"),
                conditions=_conditions(raw.get("conditions"), f"{where}.goal.conditions"),
                within=parse_duration(raw["within"], f"{where}.goal.within") if raw.get("within") else None)


STEP_KINDS = ("wait", "send", "branch", "split", "update", "escalate", "flow")


def _steps(raw: Any, where: str) -> dict[str, Step]:
    if not isinstance(raw, list) or not raw:
        raise JourneyError(f"{where}: steps must be a non-empty list")
    ids = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not NAME.match(s["id"]) or s["id"] == END:
            raise JourneyError(f"{where}.steps[{i}]: each step needs an id (lowercase, not 'end')")
        ids.append(s["id"])
    if len(set(ids)) != len(ids):
        raise JourneyError(f"{where}: step ids must be unique")
    steps: dict[str, Step] = {}
    for i, s in enumerate(raw):
        w = f"{where}.steps[{s['id']}]"
        kinds = [k for k in STEP_KINDS if k in s]
        if len(kinds) != 1:
            raise JourneyError(f"{w}: a step has exactly one of {', '.join(STEP_KINDS)}")
        bad = set(s) - {"id", "next", kinds[0]}
        if bad:
            raise JourneyError(f"{w}: unknown keys {sorted(bad)}")
        following = ids[i + 1] if i + 1 < len(ids) else END
        nxt = _goto(s.get("next", "next"), following)
        steps[s["id"]] = _step(kinds[0], s[kinds[0]], s["id"], nxt, following, w)
    return steps


def _goto(target: Any, following: str) -> str:
    return following if target in (None, "next") else str(target)


def _step(kind: str, body: Any, sid: str, nxt: str, following: str, w: str) -> Step:
    if kind == "wait":
        if not isinstance(body, dict):
            body = {"duration": body}
        modes = [k for k in ("duration", "until", "event") if k in body]
        if len(modes) != 1:
            raise JourneyError(f"{w}: wait needs exactly one of duration, until, event")
        if "event" in body and "timeout" not in body:
            raise JourneyError(f"{w}: waiting for an event needs a timeout")
        return WaitStep(
            sid, nxt,
            duration=parse_duration(body["duration"], w) if "duration" in body else None,
            until=parse_time(body["until"], w) if "until" in body else None,
            event=_event_name(body["event"], w) if "event" in body else None,
            timeout=parse_duration(body["timeout"], w) if "timeout" in body else None,
            on_event=_goto(body.get("on_event"), nxt), on_timeout=_goto(body.get("on_timeout"), nxt))
    if kind == "send":
        if isinstance(body, str):
            body = {"template": body}
        if not isinstance(body, dict) or not body.get("template"):
            raise JourneyError(f"{w}: send needs a template")
        channels = body.get("channels") or ["whatsapp", "sms", "email"]
        if not isinstance(channels, list) or any(c not in CHANNELS for c in channels):
            raise JourneyError(f"{w}: channels must be a list of {', '.join(sorted(CHANNELS))}")
        inbox = body.get("inbox") or []
        inbox = [inbox] if isinstance(inbox, str) else inbox
        if not isinstance(inbox, list) or not all(isinstance(n, str) and n.strip() for n in inbox):
            raise JourneyError(f"{w}: inbox is an inbox name, or a list of them (one per channel)")
        return SendStep(sid, nxt, template=str(body["template"]), inboxes=tuple(inbox),
                        channels=tuple(dict.fromkeys(CHANNELS[c] for c in channels)),
                        fallback_after=parse_duration(body["fallback_after"], w) if body.get("fallback_after") else None)
    if kind == "branch":
        if not isinstance(body, dict) or not isinstance(body.get("cases"), list):
            raise JourneyError(f"{w}: branch needs cases: [{{if: ..., goto: ...}}] and optionally else")
        cases = []
        for j, c in enumerate(body["cases"]):
            cw = f"{w}.cases[{j}]"
            if not isinstance(c, dict) or "goto" not in c or not isinstance(c.get("if"), dict):
                raise JourneyError(f"{cw}: a case is {{if: {{...}}, goto: step}}")
            cond = c["if"]
            bad = set(cond) - {"happened", "step", "event", "variant", "conditions"}
            if bad or not cond:
                raise JourneyError(f"{cw}: if takes happened (+ step), event, variant, conditions")
            if "happened" in cond and cond["happened"] not in HAPPENED:
                raise JourneyError(f"{cw}: happened must be one of {', '.join(HAPPENED)}")
            cases.append(Case(goto=_goto(c["goto"], following), happened=cond.get("happened"),
                              of_step=cond.get("step"), event=cond.get("event"), variant=cond.get("variant"),
                              conditions=_conditions(cond.get("conditions"), f"{cw}.conditions")))
        return BranchStep(sid, _goto(body.get("else", nxt), following), cases=tuple(cases))
    if kind == "split":
        arms_raw = body.get("arms") if isinstance(body, dict) else body
        if not isinstance(arms_raw, list) or not arms_raw:
            raise JourneyError(f"{w}: split needs a list of {{variant, weight, goto}} (one may be holdout: true)")
        arms = []
        for j, a in enumerate(arms_raw):
            if not isinstance(a, dict) or not a.get("variant") or not isinstance(a.get("weight"), (int, float)) \
                    or a["weight"] <= 0:
                raise JourneyError(f"{w}.arms[{j}]: needs variant and a positive weight")
            holdout = bool(a.get("holdout"))
            if holdout and a.get("goto"):
                raise JourneyError(f"{w}.arms[{j}]: the holdout group receives nothing; no goto")
            arms.append(Arm(str(a["variant"]), float(a["weight"]), None if holdout else _goto(a.get("goto"), nxt),
                            holdout))
        if sum(a.holdout for a in arms) > 1 or len({a.variant for a in arms}) != len(arms):
            raise JourneyError(f"{w}: variants must be distinct, with at most one holdout")
        return SplitStep(sid, nxt, arms=tuple(arms))
    if kind == "update":
        attrs = body.get("attributes") if isinstance(body, dict) else None
        if not isinstance(attrs, dict) or not attrs:
            raise JourneyError(f"{w}: update needs attributes: {{key: value}}")
        return UpdateStep(sid, nxt, attributes=dict(attrs))
    if kind == "escalate":
        body = body if isinstance(body, dict) else {"reason": body}
        return EscalateStep(sid, nxt, reason=str(body.get("reason") or "journey"),
                            summary=body.get("summary"), team=body.get("team"))
    body = body if isinstance(body, dict) else {"name": body}
    if not body.get("name"):
        raise JourneyError(f"{w}: flow needs a name (and optionally a state)")
    return FlowStep(sid, nxt, flow=str(body["name"]), state=str(body.get("state") or "start"))


def _targets(step: Step) -> list[str]:
    out = [step.next]
    if isinstance(step, WaitStep):
        out += [step.on_event, step.on_timeout]
    elif isinstance(step, BranchStep):
        out += [c.goto for c in step.cases]
    elif isinstance(step, SplitStep):
        out += [a.goto for a in step.arms if a.goto]
    return [t for t in out if t]


def _validate(j: Journey, templates: Mapping[str, Template], where: str) -> None:
    sends = {s.id for s in j.steps.values() if isinstance(s, SendStep)}
    for step in j.steps.values():
        w = f"{where}.steps[{step.id}]"
        for target in _targets(step):
            if target != END and target not in j.steps:
                raise JourneyError(f"{w}: goes to unknown step {target!r}")
        if isinstance(step, BranchStep):
            for c in step.cases:
                if c.of_step is not None and c.of_step not in sends:
                    raise JourneyError(f"{w}: happened ... step {c.of_step!r} is not a send step")
        if isinstance(step, SendStep):
            tpl = templates.get(step.template)
            if tpl is None:
                raise JourneyError(f"{w}: unknown template {step.template!r}")
            for channel in step.channels:
                if not tpl.supports(channel):
                    raise JourneyError(f"{w}: template {step.template!r} has no {channel.value} variant")
            for var in tpl.variables.values():
                if var.required and not (var.source and var.source.startswith("event.")
                                         and var.source.split(".")[1] in j.entry.require):
                    raise JourneyError(
                        f"{w}: template {step.template!r} variable {var.name!r} has no default and "
                        f"{var.source!r} is not an event property the entry requires (entry.require)")
    _check_no_instant_loop(j, where)


def _check_no_instant_loop(j: Journey, where: str) -> None:
    """Every cycle must pass through a wait step, or a journey could spin (or spam) forever."""
    graph = {s.id: ([] if isinstance(s, WaitStep) else [t for t in _targets(s) if t != END])
             for s in j.steps.values()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise JourneyError(f"{where}: steps {' -> '.join(path + [nxt])} loop without a wait")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for sid in graph:
        if sid not in state:
            visit(sid, [sid])
