"""The settings pigeon post reads, from its own environment variables."""
from __future__ import annotations

import os


def key() -> str:
    return os.environ["PIGEON_KEY"]


def outbound_url() -> str:
    return os.environ["PIGEON_OUTBOUND_URL"]
