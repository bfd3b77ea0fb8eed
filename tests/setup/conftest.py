"""Set-up tests start the embedded PostgreSQL, which (run as root) works as a system user of its own.

That user must traverse every directory above its data and binaries; pytest keeps its temporary
directories under a root-only (0700) base, and resets that mode whenever another pytest run starts.
These tests therefore work in a directory of their own directly under the system's temp directory.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def tmp_path():
    path = Path(tempfile.mkdtemp(prefix="gw-setup-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
