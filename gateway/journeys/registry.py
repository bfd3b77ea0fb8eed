"""Loading journey definitions from a directory, and finding the version an enrollment runs on.

Layout (GATEWAY_FLOWS_DIR/journeys, else the repository's flows/journeys):
    *.yaml            one journey each (files starting with "_" are not journeys)
    _policy.yaml      guards shared by all journeys (frequency cap, quiet hours, default zone)
    templates/*.yaml  shared templates: a mapping of template name -> template

Each journey is stored self-contained (shared templates it uses folded in) in flow_versions under
the name "journey:<name>", keyed by the hash of that text, so an enrollment keeps running on the
version it entered with after the files change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import yaml

from gateway.app.settings import Settings
from gateway.infra.assets import flows_dir
from gateway.journeys.model import Journey, JourneyError, Policy, parse_journey, parse_policy

VERSION_PREFIX = "journey:"


def journeys_dir(settings: Settings) -> Path:
    return flows_dir(settings.flows_dir) / "journeys"


class JourneyRegistry:
    def __init__(self, journeys: dict[str, Journey], policy: Policy = Policy()):
        self.journeys = journeys
        self.policy = policy
        self._versions: dict[tuple[str, str], Journey] = {(j.name, j.version): j for j in journeys.values()}

    @classmethod
    def load(cls, directory: Path) -> JourneyRegistry:
        """Parse and validate every journey; JourneyError names the file and the problem."""
        if not directory.is_dir():
            return cls({}, Policy())
        policy = parse_policy(_read_yaml(directory / "_policy.yaml")) if (directory / "_policy.yaml").exists() \
            else Policy()
        shared: dict[str, Any] = {}
        for path in sorted((directory / "templates").glob("*.y*ml")):
            data = _read_yaml(path)
            if not isinstance(data, dict):
                raise JourneyError(f"{path.name}: a templates file maps template names to templates")
            shared.update(data)
        journeys: dict[str, Journey] = {}
        for path in sorted(directory.glob("*.y*ml")):
            if path.name.startswith("_"):
                continue
            try:
                journey = parse_journey(self_contained(path.read_text(encoding="utf-8"), shared), policy=policy)
            except JourneyError as exc:
                raise JourneyError(f"{path.name}: {exc}") from None
            if journey.name in journeys:
                raise JourneyError(f"{path.name}: journey {journey.name!r} is defined twice")
            journeys[journey.name] = journey
        return cls(journeys, policy)

    def current(self, name: str) -> Journey | None:
        return self.journeys.get(name)

    def entered_by(self, event_name: str) -> list[Journey]:
        return [j for j in self.journeys.values() if j.entry.event == event_name]

    async def store_versions(self, conn: asyncpg.Connection) -> None:
        for j in self.journeys.values():
            await conn.execute(
                """INSERT INTO flow_versions (name, version, definition) VALUES ($1, $2, $3)
                   ON CONFLICT (name, version) DO NOTHING""", VERSION_PREFIX + j.name, j.version, j.source)

    async def get(self, conn: asyncpg.Connection, name: str, version: str) -> Journey:
        """The definition an enrollment runs on (current files, else the stored version)."""
        found = self._versions.get((name, version))
        if found is None:
            text = await conn.fetchval("SELECT definition FROM flow_versions WHERE name = $1 AND version = $2",
                                       VERSION_PREFIX + name, version)
            if text is None:
                raise LookupError(f"journey {name!r} version {version} is not stored")
            found = parse_journey(text, policy=self.policy)
            self._versions[(name, version)] = found
        return found


def self_contained(text: str, shared_templates: dict[str, Any]) -> str:
    """The journey's YAML with the shared templates it sends folded in (its own win)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JourneyError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise JourneyError("a journey must be a mapping")
    used = {s["send"]["template"] if isinstance(s.get("send"), dict) else s.get("send")
            for s in data.get("steps") or [] if isinstance(s, dict) and s.get("send")}
    own = data.get("templates") or {}
    extra = {name: shared_templates[name] for name in sorted(used) if name in shared_templates and name not in own}
    if extra:
        data["templates"] = {**own, **extra}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


async def deployed_registry(conn: asyncpg.Connection, manifest: dict) -> JourneyRegistry:
    """The journeys of a deployment (gateway.flows.deploy), from their stored texts."""
    policy = parse_policy(yaml.safe_load(manifest["policy"])) if manifest.get("policy") else Policy()
    journeys = {}
    for name, version in (manifest.get("journeys") or {}).items():
        text = await conn.fetchval("SELECT definition FROM flow_versions WHERE name = $1 AND version = $2",
                                   VERSION_PREFIX + name, version)
        if text is not None:
            journeys[name] = parse_journey(text, policy=policy)
    return JourneyRegistry(journeys, policy)


def load_registry(settings: Settings) -> JourneyRegistry:
    return JourneyRegistry.load(journeys_dir(settings))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise JourneyError(f"{path.name}: not valid YAML: {exc}") from None
