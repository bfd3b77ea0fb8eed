"""Where the files the gateway ships beside its code live: migrations and the default flows.

In a source checkout (and an editable install) they are the repository's top-level `migrations/` and
`flows/`. A built wheel carries copies inside the package (`gateway/_shipped/`, put there by the
build step in `setup.py`), so a plain `pip install` runs with no checkout at all. This module is the
only place that knows either location.
"""
from __future__ import annotations

from pathlib import Path

# The team routing file of a flows directory (gateway.inbox.team_routing reads it); not a flow.
ROUTING_FILE = "routing.yaml"

_PACKAGE = Path(__file__).resolve().parent.parent   # the gateway package (this file is in gateway/infra/)
SHIPPED = _PACKAGE / "_shipped"


def _asset(name: str) -> Path:
    inside = SHIPPED / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def migrations_dir() -> Path:
    """The numbered SQL migrations."""
    return _asset("migrations")


def shipped_flows_dir() -> Path:
    """The flows (and `journeys/`) that ship with the gateway."""
    return _asset("flows")


def flows_dir(configured: str | Path | None = None) -> Path:
    """GATEWAY_FLOWS_DIR when set, else `./flows` when the working directory has one, else the shipped
    flows. Conversation flows, journeys and `gateway flows ...` all resolve through here."""
    if configured:
        return Path(configured)
    local = Path("flows")
    if local.is_dir() and any(local.glob("*.yaml")):
        return local
    return shipped_flows_dir()
