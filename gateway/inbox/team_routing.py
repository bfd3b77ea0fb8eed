"""Routing escalations to teams: which team an escalated conversation goes to, and what the customer
hears when that team is out of hours.

The rules live in a versioned file beside the flows (`routing.yaml` in GATEWAY_FLOWS_DIR), never in
code. A team named by the escalation itself (a flow's `handoff: {team: ...}`, a journey's
`escalate: {team: ...}`) wins; otherwise the first rule whose conditions all hold picks the team;
otherwise `default`, else the conversation stays where it is (the unrouted queue by default).

    version: 3                       # optional; the content hash is the version either way
    default: support                 # optional
    rules:
      - team: billing
        when: {label: billing}                    # a conversation label
      - team: spanish
        when: {language: [es, pt]}                # the contact's locale (es matches es_MX)
      - team: vip
        when: {attribute: {plan: enterprise}}     # contact attributes
      - team: email-desk
        when: {channel: email}                    # the channel the customer last wrote on
    teams:
      support:
        business_hours: {timezone: Europe/Berlin, monday: "09:00-18:00", ...}
        out_of_hours_message:
          en: "Our support team is back {when} ({timezone}) and will answer you here."
          es: "Nuestro equipo vuelve {when} ({timezone}) y te responderá aquí."

Parsing and matching are pure; `TeamRouter.on_escalated` (an escalation hook) does the I/O, writing
the team through `gateway.inbox.actions.route_to_team`, the one writer of a conversation's team.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import asyncpg
import yaml

from gateway.app.log import get_logger
from gateway.bot.turn import send_bot_reply
from gateway.domain import thread
from gateway.flows.hours import BusinessHours, HoursError
from gateway.inboxes import store as inboxes
from gateway.infra.assets import ROUTING_FILE

log = get_logger(__name__)

CONDITIONS = ("channel", "language", "label", "attribute")


class RoutingError(ValueError):
    """The routing file is wrong; the message names the file, the line when known, and the problem."""


@dataclass(frozen=True)
class Facts:
    """What rules look at."""

    channel: str | None = None
    language: str | None = None
    labels: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    team: str
    channel: frozenset[str] = frozenset()
    language: frozenset[str] = frozenset()
    label: frozenset[str] = frozenset()
    attribute: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def matches(self, facts: Facts) -> bool:
        if self.channel and facts.channel not in self.channel:
            return False
        if self.language and not (facts.language and _language_chain(facts.language) & self.language):
            return False
        if self.label and not (facts.labels & self.label):
            return False
        for key, allowed in self.attribute.items():
            value = facts.attributes.get(key)
            if value is None or _text(value) not in allowed:
                return False
        return True

    def describe(self) -> dict:
        when: dict[str, Any] = {k: sorted(getattr(self, k)) for k in ("channel", "language", "label") if getattr(self, k)}
        if self.attribute:
            when["attribute"] = {k: sorted(v) for k, v in self.attribute.items()}
        return {"team": self.team, "when": when}


@dataclass(frozen=True)
class TeamHours:
    hours: BusinessHours
    messages: Mapping[str, str]             # language -> text ("default" when not keyed)

    def message_for(self, language: str | None) -> str:
        for lang in [*_ordered_chain(language), "default", "en"]:
            if lang in self.messages:
                return self.messages[lang]
        return next(iter(self.messages.values()))


@dataclass(frozen=True)
class RoutingConfig:
    rules: tuple[Rule, ...] = ()
    default: str | None = None
    teams: Mapping[str, TeamHours] = field(default_factory=dict)
    version: str = "none"
    source: str | None = None

    def choose(self, facts: Facts) -> tuple[str | None, str]:
        """(team name, why): the first matching rule, else the default."""
        for index, rule in enumerate(self.rules):
            if rule.matches(facts):
                return rule.team, f"rule {index + 1}"
        if self.default:
            return self.default, "default"
        return None, "no rule matched"

    def describe(self) -> dict:
        return {"version": self.version, "source": self.source, "default": self.default,
                "rules": [r.describe() for r in self.rules],
                "teams": {name: {"timezone": t.hours.timezone, "languages": sorted(t.messages)}
                          for name, t in sorted(self.teams.items())}}


DEFAULT_OUT_OF_HOURS = "Our team is offline right now. We are back {when} ({timezone}) and will answer you here."


def parse_routing(text: str, *, source: str = ROUTING_FILE) -> RoutingConfig:
    """Parse and validate a routing file. RoutingError names the file, the line and the problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RoutingError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return RoutingConfig(version=_hash(text), source=source)

    def fail(problem: str, *path: Any) -> RoutingError:
        return RoutingError(f"{source}:{_line_of(node, path)}: {problem}")

    if not isinstance(data, dict):
        raise fail("the routing file is a mapping with rules, default and teams")
    unknown = set(data) - {"version", "rules", "default", "teams"}
    if unknown:
        raise fail(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    rules = []
    for i, raw in enumerate(data.get("rules") or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("team"), str) or not raw["team"].strip():
            raise fail("a rule needs a team name", "rules", i)
        when = raw.get("when") or {}
        if not isinstance(when, dict) or not when:
            raise fail("a rule needs when: with at least one of " + ", ".join(CONDITIONS), "rules", i)
        bad = set(when) - set(CONDITIONS)
        if bad or set(raw) - {"team", "when"}:
            raise fail(f"unknown condition {', '.join(sorted(map(str, bad or set(raw) - {'team', 'when'})))} "
                       f"(use {', '.join(CONDITIONS)})", "rules", i)
        attribute = when.get("attribute") or {}
        if not isinstance(attribute, dict):
            raise fail("attribute: maps attribute names to values", "rules", i, "when", "attribute")
        rules.append(Rule(raw["team"].strip(), _values(when.get("channel")),
                          frozenset(v.lower().replace("-", "_") for v in _values(when.get("language"))),
                          _values(when.get("label")),
                          {str(k): _values(v) for k, v in attribute.items()}))
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise fail("default: is a team name", "default")
    teams = {}
    for name, spec in (data.get("teams") or {}).items():
        if not isinstance(spec, dict):
            raise fail("a team's settings are a mapping (business_hours, out_of_hours_message)", "teams", name)
        if set(spec) - {"business_hours", "out_of_hours_message"}:
            raise fail("a team has business_hours and out_of_hours_message", "teams", name)
        if not spec.get("business_hours"):
            continue
        try:
            hours = BusinessHours.parse(spec["business_hours"])
        except HoursError as exc:
            raise fail(f"team {name!r}: business_hours: {exc}", "teams", name, "business_hours") from None
        msg = spec.get("out_of_hours_message") or DEFAULT_OUT_OF_HOURS
        messages = {"default": msg} if isinstance(msg, str) else msg
        if not isinstance(messages, dict) or not all(isinstance(v, str) for v in messages.values()):
            raise fail("out_of_hours_message is a text or a mapping of language -> text",
                       "teams", name, "out_of_hours_message")
        teams[str(name)] = TeamHours(hours, {str(k).lower().replace("-", "_"): v for k, v in messages.items()})
    return RoutingConfig(tuple(rules), default, teams, _hash(text), source)


def load_routing(directory: str | Path) -> RoutingConfig:
    """The routing file of a flows directory (no file: no rules)."""
    path = Path(directory) / ROUTING_FILE
    if not path.exists():
        return RoutingConfig()
    return parse_routing(path.read_text(encoding="utf-8"), source=str(path))


class TeamRouter:
    """The escalation hook: put the conversation in its team's queue, and tell the customer when
    that team is out of hours (unless the flow already did)."""

    def __init__(self, config: RoutingConfig, *, settings, clock):
        self.config = config
        self.settings = settings
        self.clock = clock

    async def reload(self, conn: asyncpg.Connection, manifest: dict) -> None:
        """A deployment (gateway.flows.deploy) brings its routing file."""
        text = manifest.get("routing") or ""
        self.config = parse_routing(text, source=ROUTING_FILE) if text else RoutingConfig()

    async def on_escalated(self, conn: asyncpg.Connection, conversation_id: int, *, team: str | None,
                           out_of_hours_said: bool, effects: thread.Effects) -> None:
        from gateway.inbox.actions import route_to_team

        facts = await _facts(conn, conversation_id)
        inbox = await inboxes.conversation_inbox(conn, conversation_id)
        why = "named by the escalation"
        if team is None and inbox is not None and inbox["team_name"]:
            team, why = inbox["team_name"], f"the team of inbox {inbox['name']}"
        if team is None:
            team, why = self.config.choose(facts)
        own_hours = _inbox_hours(inbox)
        if team is None and own_hours is None:
            return
        team_id = None
        if team is not None:
            team_id = await conn.fetchval("SELECT id FROM teams WHERE name = $1", team)
            await route_to_team(conn, conversation_id, team_id, team_name=team, why=why,
                                rules_version=self.config.version, effects=effects)
        hours = own_hours or self.config.teams.get(team)
        now = self.clock.now()
        if (team_id is None and own_hours is None) or hours is None or out_of_hours_said or hours.hours.is_open(now):
            return
        values = hours.hours.describe_next_open(now)
        text = hours.message_for(facts.language).format_map(_Default(values))
        await send_bot_reply(conn, conversation_id, text, settings=self.settings, effects=effects,
                             author_type="system")
        who = f"Inbox {inbox['name']}" if own_hours is not None else f"Team {team}"
        await thread.add_event(conn, conversation_id, f"{who} is out of hours; back {values['when']}",
                               event="team_out_of_hours", details={
                                   "team_id": team_id, **values,
                                   **({"inbox_id": inbox["id"]} if own_hours is not None else {})})


def _inbox_hours(inbox) -> TeamHours | None:
    """An inbox's own business hours and out-of-hours text, which win over its team's."""
    if inbox is None or not inbox["hours"]:
        return None
    text = inbox["out_of_hours_text"] or "We are out of office; we are back {when} ({timezone}) and will answer you here."
    return TeamHours(BusinessHours.parse(inbox["hours"]), {"default": text})


async def _facts(conn: asyncpg.Connection, conversation_id: int) -> Facts:
    row = await conn.fetchrow(
        """SELECT c.last_inbound_channel, c.labels, k.locale, k.attributes
           FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id = $1""", conversation_id)
    return Facts(row["last_inbound_channel"], row["locale"], frozenset(row["labels"] or ()),
                 dict(row["attributes"] or {}))


class _Default(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def _values(raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    items = raw if isinstance(raw, list) else [raw]
    return frozenset(_text(v) for v in items)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ordered_chain(language: str | None) -> list[str]:
    """es-MX -> [es_mx, es]."""
    if not language:
        return []
    lang = language.lower().replace("-", "_")
    return [lang, lang.split("_")[0]] if "_" in lang else [lang]


def _language_chain(language: str) -> set[str]:
    return set(_ordered_chain(language))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _line_of(node: Any, path: tuple) -> int:
    """The 1-based line of the YAML node at `path` (keys and list indexes); the closest parent known."""
    line = node.start_mark.line + 1 if node is not None else 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(step)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            found = node.value[step]
        else:
            found = None
        if found is None:
            break
        node = found
        line = node.start_mark.line + 1
    return line
