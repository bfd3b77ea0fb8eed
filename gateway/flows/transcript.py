"""Transcript tests: conversations written down beside each flow, replayed against the engine.

`flows/<flow>.transcripts.yaml` holds a list of cases:

    - name: order status happy path
      channel: sms                          # optional
      now: "2024-05-06T10:00:00+02:00"      # optional clock start (default: a Monday 10:00 in Berlin)
      business_api:                         # a fake business API on 127.0.0.1 for this case
        /orders/AB12345: {status: 200, json: {status: shipped, eta: "2024-05-08"}}
      steps:
        - customer: "hi"                    # or tap: <option id>, event: <name>, wait: 10m, hand_back: <state>
          bot: ["How can I help"]           # one entry per reply: substring (any case) or /regex/
          buttons: ["Order status"]         # titles of the last reply's buttons
          state: menu
        - customer: "AB-12345"
          bot: ["shipped"]
          api_calls: ["GET /orders/AB12345"]
          escalation: customer_request      # or false; also: ended, slots, tags, events, timers

`wait` advances the clock and fires the timers that fell due, as the integrator's durable timers would.
The business API is real HTTP to a local aiohttp server, never a patched function.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import aiohttp
from aiohttp import web

from gateway.domain.types import Channel
from gateway.flows.actions import ActionContext, ActionRegistry
from gateway.flows.engine import ConversationState, Engine, TurnInput, TurnResult
from gateway.flows.loader import FlowRegistry, parse_yaml
from gateway.flows.model import FlowError, parse_duration

DEFAULT_NOW = "2024-05-06T10:00:00+02:00"    # a Monday morning in Berlin: within business hours
STEP_KINDS = ("customer", "tap", "event", "wait", "hand_back")
CHECKS = ("bot", "buttons", "state", "escalation", "ended", "slots", "tags", "events", "api_calls", "timers",
          "intent", "attributes")


@dataclass(frozen=True)
class TranscriptCase:
    flow: str
    name: str
    spec: Mapping[str, Any]
    file: str

    @property
    def id(self) -> str:
        return f"{self.flow}: {self.name}"


@dataclass
class CaseResult:
    case: TranscriptCase
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class TranscriptReport:
    results: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def format(self) -> str:
        lines = []
        for r in self.results:
            lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.case.id}")
            lines.extend(f"        {f}" for f in r.failures)
        passed = sum(r.passed for r in self.results)
        lines.append(f"{passed}/{len(self.results)} transcript cases passed")
        return "\n".join(lines)


def transcript_files(directory: str | Path, name: str | None = None) -> list[Path]:
    files = sorted(Path(directory).glob("*.transcripts.y*ml"))
    return [f for f in files if name is None or f.name.split(".")[0] == name]


def collect_cases(directory: str | Path, name: str | None = None) -> list[TranscriptCase]:
    cases = []
    for path in transcript_files(directory, name):
        data = parse_yaml(path.read_text(encoding="utf-8")) or []
        if not isinstance(data, list):
            raise FlowError("a transcripts file is a list of cases", file=str(path))
        for i, spec in enumerate(data):
            if not isinstance(spec, Mapping) or not isinstance(spec.get("steps"), list):
                raise FlowError(f"case #{i + 1} needs a name and a list of steps", file=str(path))
            cases.append(TranscriptCase(spec.get("flow", path.name.split(".")[0]),
                                        str(spec.get("name", f"case {i + 1}")), spec, str(path)))
    return cases


class FakeBusinessApi:
    """A local aiohttp server answering from a {path: {status, json, text, delay}} table, recording calls."""

    def __init__(self, routes: Mapping[str, Mapping[str, Any]]):
        self.routes = dict(routes or {})
        self.calls: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> "FakeBusinessApi":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(f"{request.method} {request.path}")
        spec = self.routes.get(request.path) or self.routes.get(f"{request.method} {request.path}")
        if spec is None:
            return web.json_response({"error": "not found"}, status=404)
        if spec.get("delay"):
            await asyncio.sleep(float(spec["delay"]))
        status = int(spec.get("status", 200))
        if "json" in spec:
            return web.json_response(spec["json"], status=status)
        return web.Response(text=str(spec.get("text", "")), status=status)


async def run_case(case: TranscriptCase, registry: FlowRegistry, actions: ActionRegistry | None = None) -> CaseResult:
    result = CaseResult(case)
    spec = case.spec
    engine = Engine(registry, actions)
    channel = Channel(spec["channel"]) if spec.get("channel") else None
    now = _parse_now(spec.get("now", DEFAULT_NOW))
    async with FakeBusinessApi(spec.get("business_api") or {}) as api, aiohttp.ClientSession() as session:
        settings = {"business_api_base": api.base_url, **(spec.get("settings") or {})}
        ctx = ActionContext(session=session, settings=settings, attributes=dict(spec.get("attributes") or {}))
        state: ConversationState | None = None
        escalated = ended = False
        timers: dict[str, datetime] = {}
        for number, step in enumerate(spec["steps"], start=1):
            where = f"step {number}"
            kinds = [k for k in STEP_KINDS if k in step]
            unknown = set(step) - set(STEP_KINDS) - set(CHECKS)
            if len(kinds) != 1 or unknown:
                result.failures.append(f"{where}: needs exactly one of {', '.join(STEP_KINDS)}"
                                       + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
                break
            calls_before = len(api.calls)
            outcomes: list[TurnResult] = []
            kind = kinds[0]
            if kind == "wait":
                now += parse_duration(step["wait"])
                for name, due in sorted(timers.items(), key=lambda item: item[1]):
                    if due <= now and name in timers and state is not None and not (escalated or ended):
                        del timers[name]
                        outcomes.append(await engine.turn(state, TurnInput(event=f"timeout:{name}", channel=channel,
                                                                           now=due), ctx))
                        state, escalated, ended = _apply(outcomes[-1], timers, due)
            elif kind == "hand_back":
                if state is None:
                    result.failures.append(f"{where}: nothing to hand back")
                    break
                outcomes.append(engine.resume_at(state, str(step["hand_back"]), now=now, channel=channel))
                state, escalated, ended = _apply(outcomes[-1], timers, now)
            elif escalated:
                pass        # a person has the conversation: the bot is not asked
            else:
                inp = TurnInput(text=str(step.get("customer", "")), channel=channel, now=now,
                                reply_id=str(step["tap"]) if kind == "tap" else None,
                                event=str(step["event"]) if kind == "event" else None)
                if state is None or ended:
                    timers.clear()
                    outcomes.append(await engine.begin(inp, ctx, flow_name=case.flow))
                else:
                    outcomes.append(await engine.turn(state, inp, ctx))
                state, escalated, ended = _apply(outcomes[-1], timers, now)
            result.failures.extend(f"{where} ({kind}: {step[kind]!r}): {problem}"
                                   for problem in _check(step, outcomes, state, timers, api.calls[calls_before:]))
            if result.failures:
                break
    return result


def _apply(outcome: TurnResult, timers: dict[str, datetime], now: datetime):
    for name in outcome.cancel_timers:
        timers.pop(name, None)
    for timer in outcome.timers:
        timers[timer.name] = now + timer.delay
    if outcome.escalation is not None or outcome.ended:
        timers.clear()
    return outcome.state, outcome.escalation is not None, outcome.ended


def _parse_now(value: Any) -> datetime:
    now = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if now.tzinfo is None:
        raise FlowError(f"transcript clock {value!r} needs a UTC offset")
    return now


def _matches(expected: str, actual: str) -> bool:
    if len(expected) > 1 and expected.startswith("/") and expected.endswith("/"):
        return re.search(expected[1:-1], actual) is not None
    return expected.casefold() in actual.casefold()


def _check(step: Mapping, outcomes: list[TurnResult], state: ConversationState | None,
           timers: Mapping[str, datetime], calls: list[str]) -> list[str]:
    problems = []
    replies = [r for o in outcomes for r in o.replies]
    texts = [r.text for r in replies]
    if "bot" in step:
        expected = step["bot"] if isinstance(step["bot"], list) else [step["bot"]]
        if len(expected) != len(texts) or not all(_matches(str(e), t) for e, t in zip(expected, texts)):
            problems.append(f"bot said {texts!r}, expected {expected!r}")
    if "buttons" in step:
        titles = [b.title for b in replies[-1].buttons] if replies else []
        if titles != list(step["buttons"]):
            problems.append(f"buttons were {titles!r}, expected {list(step['buttons'])!r}")
    if "state" in step and (state is None or state.state != step["state"]):
        problems.append(f"state is {state.state if state else None!r}, expected {step['state']!r}")
    if "escalation" in step:
        reasons = [o.escalation.reason for o in outcomes if o.escalation]
        want = step["escalation"]
        if (want is False and reasons) or (want is not False and want not in reasons and
                                           not (want is True and reasons)):
            problems.append(f"escalations {reasons!r}, expected {want!r}")
    if "ended" in step and any(o.ended for o in outcomes) != bool(step["ended"]):
        problems.append(f"ended is {not step['ended']}, expected {step['ended']}")
    if "slots" in step:
        slots = state.slots if state else {}
        for key, value in step["slots"].items():
            if slots.get(key) != value:
                problems.append(f"slot {key} is {slots.get(key)!r}, expected {value!r}")
    if "tags" in step:
        tags = [t for o in outcomes for t in o.tags]
        if sorted(tags) != sorted(step["tags"]):
            problems.append(f"tags {tags!r}, expected {step['tags']!r}")
    if "attributes" in step:
        updates = {k: v for o in outcomes for k, v in o.attribute_updates.items()}
        if updates != dict(step["attributes"]):
            problems.append(f"attribute updates {updates!r}, expected {dict(step['attributes'])!r}")
    if "events" in step:
        names = [name for o in outcomes for name, _ in o.events]
        if names != list(step["events"]):
            problems.append(f"events {names!r}, expected {step['events']!r}")
    if "api_calls" in step and calls != list(step["api_calls"]):
        problems.append(f"business API calls {calls!r}, expected {step['api_calls']!r}")
    if "timers" in step and sorted(timers) != sorted(step["timers"]):
        problems.append(f"pending timers {sorted(timers)!r}, expected {sorted(step['timers'])!r}")
    if "intent" in step:
        intents = [o.matched_intent for o in outcomes]
        if step["intent"] not in intents:
            problems.append(f"matched intents {intents!r}, expected {step['intent']!r}")
    return problems


async def run_transcripts_async(directory: str | Path, name: str | None = None,
                                actions: ActionRegistry | None = None) -> TranscriptReport:
    registry = FlowRegistry.from_directory(directory, actions=actions.action_names() if actions else None,
                                           guards=actions.guards if actions else ())
    report = TranscriptReport()
    for case in collect_cases(directory, name):
        try:
            report.results.append(await run_case(case, registry, actions))
        except FlowError as exc:
            report.results.append(CaseResult(case, [str(exc)]))
    return report


def run_transcripts(directory: str | Path, name: str | None = None,
                    actions: ActionRegistry | None = None) -> TranscriptReport:
    """Run every transcript case (of one flow, with `name`) in `directory`; see TranscriptReport.format."""
    return asyncio.run(run_transcripts_async(directory, name, actions))
