"""A plugin that does not import stops the start, with an error naming the module and the exception."""
from __future__ import annotations

import sys

import pytest

from gateway.app.plugins import PluginError
from gateway.app.runtime import PLUGINS, Runtime


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    (tmp_path / "gw_broken_plugin.py").write_text("import json\nraise ValueError('bad config in plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "gw_broken_plugin"
    sys.modules.pop("gw_broken_plugin", None)


async def test_a_missing_plugin_module_stops_the_start(settings, redis_client):
    with pytest.raises(PluginError, match=r"gateway\.channels\.telegram\.plugin failed to import: ModuleNotFoundError"):
        async with Runtime(settings, roles=("http",), plugin_modules=(*PLUGINS, "gateway.channels.telegram.plugin")):
            pass


async def test_a_plugin_that_fails_to_import_stops_the_start(settings, redis_client, broken_plugin):
    with pytest.raises(PluginError, match="gw_broken_plugin failed to import: ValueError: bad config in plugin"):
        async with Runtime(settings, roles=("http",), plugin_modules=(broken_plugin,)):
            pass
