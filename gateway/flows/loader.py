"""Loading flow definitions (YAML) into validated `Flow` objects, and the registry of loaded versions.

A flow's version is a stable hash of its text, so the worker can store the text by version and keep a
conversation on the version it started with after a deploy changes the file.
"""
from __future__ import annotations

import hashlib
import re
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from gateway.flows.hours import BusinessHours, HoursError
from gateway.flows.machine import OPERATORS, build_machine
from gateway.flows.model import (ActionRef, Condition, FaqEntry, Flow, FlowError, GlobalConfig, Handoff, Option, Say,
                                 SlotDef, StateDef, Trigger, UnknownFlowVersion, parse_duration)
from gateway.flows.nlu import HANDOFF_EXAMPLES, HANDOFF_INTENT, HANDOFF_KEYWORDS, IntentModel, share_vocabulary
from gateway.flows.slots import DEFAULT_ORDER_PATTERN, SLOT_TYPES
from gateway.infra.assets import ROUTING_FILE

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TRIGGER_KINDS = ("intent", "choice", "event", "result", "timeout", "else")
_TOP_KEYS = {"name", "description", "start", "nlu", "global", "intents", "slots", "faq", "states"}
_STATE_KEYS = {"say", "options", "button_label", "do", "on", "goto", "collect", "timeout", "cancel",
               "fallback", "final", "description"}
_TRIGGER_KEYS = set(TRIGGER_KINDS) | {"when", "goto", "say", "do"}
_GLOBAL_KEYS = {"misunderstanding_limit", "fallback", "error_message", "handoff", "business_hours",
                "out_of_hours_message", "cancel_state", "on", "timeout"}
# Actions that are part of the engine's vocabulary whatever the registry holds.
ENGINE_ACTIONS = frozenset({"escalate", "end"})


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads `on`, `off`, `yes`, `no` as booleans; in a flow, `on:` is a key and "no" an
    answer. Only true/false are booleans here."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_YamlLoader)


def flow_version(text: str) -> str:
    """A stable content hash of the definition text (12 hex chars)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_flow_text(name: str, text: str, *, source: str | None = None,
                   actions: Iterable[str] | None = None, guards: Iterable[str] = ()) -> Flow:
    """Parse and validate one flow definition; build its machine. Raises FlowError.

    `actions` / `guards`: the names the action registry knows (default: the built-in actions).
    """
    if actions is None:
        from gateway.flows.actions import ActionRegistry
        actions = ActionRegistry.default().action_names()
    source = source or f"{name}.yaml"
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise FlowError(f"not valid YAML: {exc}", file=source) from None
    parser = _Parser(name, source, set(actions) | ENGINE_ACTIONS, set(guards))
    flow = parser.parse(data, text)
    flow.machine = build_machine(flow)
    flow.state_intents = _state_intents(flow)
    share_vocabulary([*flow.intents.values(), *(entry.matcher for entry in flow.faq)])
    return flow


def _state_intents(flow: Flow) -> dict[str, tuple[IntentModel, ...]]:
    """Per state, the intents worth matching there: its own intent triggers, then the global ones
    (the handoff intent is matched separately, before these)."""
    result = {}
    for state in flow.states.values():
        names = [t.key for t in state.on + flow.config.on if t.kind == "intent" and t.key != HANDOFF_INTENT]
        result[state.name] = tuple(flow.intents[n] for n in dict.fromkeys(names))
    return result


def load_flow_file(path: str | Path, **kwargs) -> Flow:
    path = Path(path)
    return load_flow_text(path.name.split(".")[0], path.read_text(encoding="utf-8"), source=str(path), **kwargs)


def flow_files(directory: str | Path) -> list[Path]:
    """Flow definitions in a directory: *.yaml / *.yml except *.transcripts.yaml and the team
    routing file."""
    directory = Path(directory)
    files = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    return [p for p in files if ".transcripts." not in p.name and p.name != ROUTING_FILE]


class _Parser:
    def __init__(self, name: str, source: str, actions: set[str], guards: set[str]):
        self.name, self.source, self.actions, self.guards = name, source, actions, guards

    def error(self, problem: str, state: str | None = None) -> FlowError:
        return FlowError(problem, file=self.source, state=state)

    # -- top level ---------------------------------------------------------------------------
    def parse(self, data: Any, text: str) -> Flow:
        if not isinstance(data, Mapping):
            raise self.error("the file must be a mapping with name, start and states")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise self.error(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
        declared = data.get("name", self.name)
        if declared != self.name:
            raise self.error(f"name {declared!r} does not match the flow name {self.name!r}")
        states_raw = data.get("states")
        if not isinstance(states_raw, Mapping) or not states_raw:
            raise self.error("no states")
        for sname in states_raw:
            if not isinstance(sname, str) or not _NAME.match(sname):
                raise self.error(f"bad state name {sname!r} (lowercase letters, digits, _)")
        self.state_names = set(states_raw)
        start = data.get("start")
        if start not in self.state_names:
            raise self.error(f"start state {start!r} is not a state")
        nlu = data.get("nlu") or {}
        threshold = float(nlu.get("threshold", 80))
        self.intents = self.parse_intents(data.get("intents") or {}, threshold)
        self.slots = self.parse_slots(data.get("slots") or {})
        faq = self.parse_faq(data.get("faq") or [], threshold)
        config = self.parse_global(data.get("global") or {})
        states = {}
        for sname, raw in states_raw.items():
            states[sname] = self.parse_state(sname, raw or {}, config)
        flow = Flow(name=self.name, version=flow_version(text), text=text, source=self.source,
                    description=str(data.get("description") or "").strip(), start=start, states=states,
                    intents=self.intents, slots=self.slots, faq=faq, config=config, threshold=threshold)
        self.check_flow(flow)
        return flow

    def parse_intents(self, raw: Any, threshold: float) -> dict[str, IntentModel]:
        if not isinstance(raw, Mapping):
            raise self.error("intents must be a mapping of name -> {examples, keywords}")
        intents = {}
        for iname, spec in raw.items():
            spec = spec or {}
            if isinstance(spec, list):
                spec = {"examples": spec}
            unknown = set(spec) - {"examples", "keywords", "threshold", "include_faq"}
            if unknown:
                raise self.error(f"intent {iname!r}: unknown keys {', '.join(sorted(unknown))}")
            examples = [str(e) for e in spec.get("examples") or []]
            keywords = [str(k) for k in spec.get("keywords") or []]
            if iname == HANDOFF_INTENT:
                examples += HANDOFF_EXAMPLES
                keywords += HANDOFF_KEYWORDS
            if not examples and not keywords:
                raise self.error(f"intent {iname!r} has no examples and no keywords")
            intents[iname] = IntentModel.build(iname, examples, keywords, spec.get("threshold", threshold))
            if spec.get("include_faq"):
                self.faq_intent = iname
        if HANDOFF_INTENT not in intents:
            intents[HANDOFF_INTENT] = IntentModel.build(HANDOFF_INTENT, HANDOFF_EXAMPLES, HANDOFF_KEYWORDS,
                                                        threshold)
        return intents

    def parse_faq(self, raw: Any, threshold: float) -> tuple[FaqEntry, ...]:
        if not isinstance(raw, list):
            raise self.error("faq must be a list of {id, questions, answer}")
        entries = []
        for spec in raw:
            if not isinstance(spec, Mapping) or not spec.get("id") or not spec.get("answer") \
                    or not spec.get("questions"):
                raise self.error(f"faq entry {spec!r} needs id, questions and answer")
            unknown = set(spec) - {"id", "title", "questions", "keywords", "answer"}
            if unknown:
                raise self.error(f"faq entry {spec['id']!r}: unknown keys {', '.join(sorted(unknown))}")
            questions = tuple(map(str, spec["questions"]))
            keywords = tuple(map(str, spec.get("keywords") or ()))
            entries.append(FaqEntry(str(spec["id"]), questions, str(spec["answer"]),
                                    IntentModel.build(str(spec["id"]), questions, keywords, threshold), keywords))
        faq_intent = getattr(self, "faq_intent", None)
        if faq_intent:   # the FAQ's questions and keywords also lead to the intent that answers them
            old = self.intents[faq_intent]
            self.intents[faq_intent] = old.with_examples([q for e in entries for q in e.questions],
                                                         [k for e in entries for k in e.keywords])
        return tuple(entries)

    def parse_slots(self, raw: Any) -> dict[str, SlotDef]:
        if not isinstance(raw, Mapping):
            raise self.error("slots must be a mapping")
        slots = {}
        for sname, spec in raw.items():
            spec = spec or {}
            stype = spec.get("type", "text")
            if stype not in SLOT_TYPES:
                raise self.error(f"slot {sname!r}: unknown type {stype!r} (one of {', '.join(SLOT_TYPES)})")
            if not spec.get("prompt"):
                raise self.error(f"slot {sname!r} needs a prompt")
            pattern = spec.get("pattern")
            if stype == "order_number":
                pattern = pattern or DEFAULT_ORDER_PATTERN
            if stype == "pattern" and not pattern:
                raise self.error(f"slot {sname!r}: type pattern needs a pattern")
            regex = None
            if pattern:
                try:
                    regex = re.compile(pattern, re.IGNORECASE if stype == "order_number" else 0)
                except re.error as exc:
                    raise self.error(f"slot {sname!r}: bad regex {pattern!r}: {exc}") from None
            attempts = spec.get("max_attempts", 3)
            if not isinstance(attempts, int) or attempts < 1:
                raise self.error(f"slot {sname!r}: max_attempts must be a positive integer")
            on_fail = spec.get("on_fail", "escalate")
            if on_fail != "escalate" and on_fail not in self.state_names:
                raise self.error(f"slot {sname!r}: on_fail {on_fail!r} is not a state (or 'escalate')")
            slots[sname] = SlotDef(sname, stype, str(spec["prompt"]), spec.get("reprompt"), attempts, on_fail,
                                   pattern, regex, spec.get("region"), int(spec.get("min_length", 1)),
                                   spec.get("keep_separators") is True)
        return slots

    def parse_global(self, raw: Mapping) -> GlobalConfig:
        unknown = set(raw) - _GLOBAL_KEYS
        if unknown:
            raise self.error(f"global: unknown keys {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        if "misunderstanding_limit" in raw:
            limit = raw["misunderstanding_limit"]
            if not isinstance(limit, int) or limit < 1:
                raise self.error("global: misunderstanding_limit must be a positive integer")
            kwargs["misunderstanding_limit"] = limit
        for key in ("fallback", "error_message", "out_of_hours_message"):
            if key in raw:
                kwargs[key] = str(raw[key])
        if "handoff" in raw:
            h = raw["handoff"] or {}
            if h.get("state") is not None and h["state"] not in self.state_names:
                raise self.error(f"global: handoff state {h['state']!r} is not a state")
            kwargs["handoff"] = Handoff(str(h.get("message", Handoff.message)), h.get("state"), h.get("team"))
        if raw.get("business_hours"):
            try:
                kwargs["business_hours"] = BusinessHours.parse(raw["business_hours"])
            except HoursError as exc:
                raise self.error(f"global: business_hours: {exc}") from None
        if raw.get("cancel_state") is not None:
            if raw["cancel_state"] not in self.state_names:
                raise self.error(f"global: cancel_state {raw['cancel_state']!r} is not a state")
            kwargs["cancel_state"] = raw["cancel_state"]
        kwargs["on"] = self.parse_triggers(None, raw.get("on") or [], is_global=True)
        kwargs["timeouts"] = self.parse_timeouts(None, raw.get("timeout"))
        return GlobalConfig(**kwargs)

    # -- states ------------------------------------------------------------------------------
    def parse_state(self, name: str, raw: Any, config: GlobalConfig) -> StateDef:
        if isinstance(raw, str):
            raw = {"say": raw}
        if not isinstance(raw, Mapping):
            raise self.error("must be a mapping", name)
        unknown = set(raw) - _STATE_KEYS
        if unknown:
            raise self.error(f"unknown keys {', '.join(sorted(map(str, unknown)))}", name)
        say = self.parse_say(name, raw.get("say"), raw.get("options"), raw.get("button_label"))
        collect = raw.get("collect")
        if collect is not None and collect not in self.slots:
            raise self.error(f"collect: unknown slot {collect!r}", name)
        if collect and say is None:
            say = Say(self.slots[collect].prompt)
        triggers = list(self.parse_triggers(name, raw.get("on") or []))
        timeouts = [t for t in triggers if t.kind == "timeout"]
        triggers = [t for t in triggers if t.kind != "timeout"]
        if raw.get("timeout") is not None:
            if timeouts:
                raise self.error("timeout given both in 'timeout' and in 'on'", name)
            timeouts = list(self.parse_timeouts(name, raw["timeout"]))
        final = bool(raw.get("final", False))
        do = self.parse_actions(name, raw.get("do"))
        final = final or any(a.name == "end" for a in do)
        escalates = any(a.name == "escalate" for a in do)
        if not timeouts and not final and not escalates and raw.get("timeout", "default") == "default" \
                and (collect or not raw.get("goto")):
            timeouts = [Trigger("timeout", str(i + 1), t.when, t.goto, t.say, t.do, t.after)
                        for i, t in enumerate(config.timeouts)]
        option_ids = [o.id for o in say.options] if say else []
        if len(set(option_ids)) != len(option_ids):
            raise self.error("two options with the same id", name)
        for opt in say.options if say else ():
            if opt.goto is not None:
                triggers.append(Trigger("choice", opt.id, goto=opt.goto))
        self.check_duplicates(name, triggers)
        choice_keys = {t.key for t in triggers if t.kind == "choice"}
        for opt_id in option_ids:
            if opt_id not in choice_keys:
                raise self.error(f"option {opt_id!r} leads nowhere (give it a goto or an 'on: choice')", name)
        for t in triggers:
            if t.kind == "choice" and t.key not in option_ids:
                raise self.error(f"choice {t.key!r} is not one of this state's options", name)
        done = None
        if raw.get("goto") is not None:
            done = Trigger("done", goto=self.target(name, raw["goto"]))
        cancel = raw.get("cancel")
        if cancel is not None:
            self.target(name, cancel)
        return StateDef(name=name, say=say, do=do, on=tuple(triggers), done=done, collect=collect,
                        timeouts=tuple(timeouts), cancel=cancel, fallback=raw.get("fallback"), final=final,
                        description=raw.get("description"))

    def parse_say(self, state: str | None, raw: Any, options: Any = None, button_label: Any = None) -> Say | None:
        if raw is None and options is None:
            return None
        if isinstance(raw, Mapping):
            options = raw.get("options", options)
            button_label = raw.get("button_label", button_label)
            raw = raw.get("text")
        if not isinstance(raw, str) or not raw.strip():
            raise self.error("say needs a text", state)
        opts = []
        for spec in options or []:
            if isinstance(spec, str):
                spec = {"id": re.sub(r"\W+", "_", spec.casefold()).strip("_"), "title": spec}
            if not isinstance(spec, Mapping) or not spec.get("id") or not spec.get("title"):
                raise self.error(f"option {spec!r} needs an id and a title", state)
            goto = spec.get("goto")
            if goto is not None:
                self.target(state, goto)
            opts.append(Option(str(spec["id"]), str(spec["title"]), spec.get("description"), goto))
        return Say(raw.strip(), tuple(opts), button_label)

    def parse_actions(self, state: str | None, raw: Any) -> tuple[ActionRef, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raw = [raw]
        refs = []
        for spec in raw:
            if isinstance(spec, str):
                name, args = spec, {}
            elif isinstance(spec, Mapping) and len(spec) == 1:
                name, args = next(iter(spec.items()))
                if args is None:
                    args = {}
                elif not isinstance(args, Mapping):
                    args = {"value": args}
            else:
                raise self.error(f"bad action {spec!r} (a name, or {{name: {{args}}}})", state)
            if name not in self.actions:
                raise self.error(f"unknown action {name!r}", state)
            refs.append(ActionRef(str(name), dict(args)))
        return tuple(refs)

    def parse_triggers(self, state: str | None, raw: Any, is_global: bool = False) -> tuple[Trigger, ...]:
        if isinstance(raw, Mapping):   # short form: {intent_or_choice_name: target}
            raw = [{"intent" if k in self.intents else "event": k, "goto": v} if k not in TRIGGER_KINDS
                   else {k: True, "goto": v} for k, v in raw.items()]
        if not isinstance(raw, list):
            raise self.error("'on' must be a list of triggers", state)
        triggers = []
        for spec in raw:
            if not isinstance(spec, Mapping):
                raise self.error(f"bad trigger {spec!r}", state)
            unknown = set(spec) - _TRIGGER_KEYS
            if unknown:
                raise self.error(f"trigger {dict(spec)!r}: unknown keys {', '.join(sorted(unknown))}", state)
            kinds = [k for k in TRIGGER_KINDS if k in spec]
            if len(kinds) != 1:
                raise self.error(f"trigger {dict(spec)!r} needs exactly one of {', '.join(TRIGGER_KINDS)}", state)
            kind = kinds[0]
            key, after = spec[kind], None
            if kind == "else":
                key = None
            elif kind == "timeout":
                after, key = self.duration(state, key), None
            elif kind == "intent" and key not in self.intents:
                raise self.error(f"unknown intent {key!r}", state)
            elif kind == "choice" and is_global:
                raise self.error("choice triggers belong to a state, not to global", state)
            else:
                key = str(key)
            goto = self.target(state, spec["goto"]) if spec.get("goto") is not None else None
            triggers.append(Trigger(kind, key, self.parse_when(state, spec.get("when")), goto,
                                    self.parse_say(state, spec.get("say")), self.parse_actions(state, spec.get("do")),
                                    after, is_global))
        if is_global:
            self.check_duplicates(state, triggers)
        timeouts = [t for t in triggers if t.kind == "timeout"]
        numbered = [Trigger("timeout", str(i + 1), t.when, t.goto, t.say, t.do, t.after, is_global)
                    for i, t in enumerate(sorted(timeouts, key=lambda t: t.after))]
        return tuple(t for t in triggers if t.kind != "timeout") + tuple(numbered)

    def parse_timeouts(self, state: str | None, raw: Any) -> tuple[Trigger, ...]:
        if raw is None or raw is False or raw == "none":
            return ()
        items = raw if isinstance(raw, list) else [raw]
        specs = []
        for item in items:
            if not isinstance(item, Mapping) or "after" not in item:
                raise self.error(f"timeout {item!r} needs 'after' (e.g. 10m) and a goto, say or do", state)
            unknown = set(item) - {"after", "goto", "say", "do", "when"}
            if unknown:
                raise self.error(f"timeout: unknown keys {', '.join(sorted(unknown))}", state)
            specs.append({"timeout": item["after"], **{k: v for k, v in item.items() if k != "after"}})
        return self.parse_triggers(state, specs)

    def parse_when(self, state: str | None, raw: Any) -> tuple[Condition, ...]:
        if raw is None:
            return ()
        items = raw if isinstance(raw, list) else [raw]
        conds = []
        for item in items:
            if isinstance(item, str):
                conds.append(self.guard(state, item))
                continue
            if not isinstance(item, Mapping):
                raise self.error(f"bad condition {item!r}", state)
            for path, expected in item.items():
                if path == "guard":
                    conds.append(self.guard(state, expected))
                elif isinstance(expected, Mapping):
                    if len(expected) != 1 or next(iter(expected)) not in OPERATORS:
                        raise self.error(f"condition on {path!r}: use one of {', '.join(OPERATORS)}", state)
                    op, value = next(iter(expected.items()))
                    conds.append(Condition(str(path), op, _freeze(value)))
                else:
                    conds.append(Condition(str(path), "equals", _freeze(expected)))
        return tuple(conds)

    def guard(self, state: str | None, name: Any) -> Condition:
        if name not in self.guards:
            raise self.error(f"unknown guard {name!r}", state)
        return Condition(guard=str(name))

    def duration(self, state: str | None, value: Any):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(str(exc), state) from None

    def target(self, state: str | None, name: Any) -> str:
        if name not in self.state_names:
            raise self.error(f"goto {name!r} is not a state", state)
        return name

    def check_duplicates(self, state: str | None, triggers: list[Trigger]) -> None:
        unguarded = set()
        seen = set()
        for t in triggers:
            key = (t.kind, t.key, t.when if t.kind != "timeout" else t.after)
            if (t.kind, t.key) in unguarded or key in seen:
                raise self.error(f"duplicate trigger {t.event_name if t.kind != 'timeout' else t.label()}", state)
            seen.add(key)
            if not t.when:
                unguarded.add((t.kind, t.key))

    # -- whole-flow checks ---------------------------------------------------------------------
    def check_flow(self, flow: Flow) -> None:
        for state in flow.states.values():
            if state.collect and state.done is None:
                raise self.error(f"collects {state.collect!r} but has no goto for when it is collected",
                                 state.name)
            waits = state.done is None and not state.final and not _escalates(state) \
                and not any(t.kind == "result" for t in state.on)
            if (waits or state.name == flow.start) and state.say is None and state.collect is None:
                raise self.error("the customer is waiting here but the state says nothing (add 'say')",
                                 state.name)
        self.check_reachable(flow)
        self.check_loops(flow)

    def check_reachable(self, flow: Flow) -> None:
        seen = {flow.start}
        queue = deque([flow.start])
        extra = [t.goto for t in flow.config.on] + [flow.config.handoff.state, flow.config.cancel_state]
        extra += [s.on_fail for s in flow.slots.values()]
        for name in extra:
            if name in flow.states and name not in seen:
                seen.add(name)
                queue.append(name)
        while queue:
            state = flow.states[queue.popleft()]
            targets = [t.goto for t in state.on + state.timeouts] + [state.cancel]
            if state.done:
                targets.append(state.done.goto)
            for target in targets:
                if target and target not in seen:
                    seen.add(target)
                    queue.append(target)
        for name in flow.states:
            if name not in seen:
                raise self.error("unreachable: no trigger leads here", name)

    def check_loops(self, flow: Flow) -> None:
        """States that move on by themselves (state-level goto without collect) must not cycle."""
        auto = {s.name: s.done.goto for s in flow.states.values() if s.done and not s.collect and not s.do}
        for start in auto:
            path, current = [start], auto[start]
            while current in auto:
                if current in path:
                    raise self.error(f"automatic goto loop: {' -> '.join(path + [current])}", start)
                path.append(current)
                current = auto[current]


def _freeze(value: Any) -> Any:
    """Lists in conditions become tuples so triggers stay hashable (duplicate checks)."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _escalates(state: StateDef) -> bool:
    return any(a.name == "escalate" for a in state.do)


class FlowRegistry:
    """Every loaded (flow, version), the current version of each flow, and which flow starts where.

    `get(name)` gives the current version; `get(name, version)` an exact one (raising
    UnknownFlowVersion when it is not loaded: fetch the stored text and `add_version` it).
    """

    def __init__(self, *, default_flow: str = "support", channel_flows: Mapping[str, str] | None = None,
                 entry_points: Mapping[str, str] | None = None, actions: Iterable[str] | None = None,
                 guards: Iterable[str] = ()):
        self.default_flow = default_flow
        self.channel_flows = {getattr(k, "value", k): v for k, v in (channel_flows or {}).items()}
        self.entry_points = dict(entry_points or {})
        self._actions = None if actions is None else tuple(actions)
        self._guards = tuple(guards)
        self._versions: dict[tuple[str, str], Flow] = {}
        self._current: dict[str, str] = {}

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> "FlowRegistry":
        registry = cls(**kwargs)
        registry.load_directory(directory)
        return registry

    def load_directory(self, directory: str | Path) -> list[Flow]:
        """Load every flow file; each becomes its flow's current version."""
        files = flow_files(directory)
        if not Path(directory).is_dir():
            raise FlowError(f"flows directory {directory} does not exist")
        flows = []
        for path in files:
            flow = load_flow_file(path, actions=self._actions, guards=self._guards)
            self._add(flow, current=True)
            flows.append(flow)
        return flows

    def add_version(self, name: str, text: str, *, source: str | None = None, current: bool = False) -> Flow:
        """Load a stored text (e.g. an older version from the database). Idempotent per version."""
        version = flow_version(text)
        existing = self._versions.get((name, version))
        if existing is not None:
            if current:
                self._current[name] = version
            return existing
        flow = load_flow_text(name, text, source=source or f"{name}.yaml@{version}", actions=self._actions,
                              guards=self._guards)
        self._add(flow, current=current or name not in self._current)
        return flow

    def _add(self, flow: Flow, *, current: bool) -> None:
        self._versions[(flow.name, flow.version)] = flow
        if current:
            self._current[flow.name] = flow.version

    def get(self, name: str, version: str | None = None) -> Flow:
        if version is None:
            version = self._current.get(name)
        flow = self._versions.get((name, version)) if version else None
        if flow is None:
            raise UnknownFlowVersion(name, version)
        return flow

    def has(self, name: str, version: str | None = None) -> bool:
        return (name, version or self._current.get(name)) in self._versions

    def names(self) -> list[str]:
        return sorted(self._current)

    def current_versions(self) -> list[Flow]:
        """The current version of every flow (what the worker should store by version)."""
        return [self._versions[(n, v)] for n, v in sorted(self._current.items())]

    def flow_for(self, *, channel: Any = None, entry_point: str | None = None, name: str | None = None) -> Flow:
        """Which flow a new conversation starts: explicit name, else entry point, else channel, else default."""
        channel_key = getattr(channel, "value", channel)
        chosen = name or self.entry_points.get(entry_point or "") or self.channel_flows.get(channel_key) \
            or self.default_flow
        return self.get(chosen)
