"""A `gateway run` whose HTTP address is taken stops at once with one JSON line saying so, before any
worker, outbox sender or timer has started (a second start by mistake must not begin work it then drops)."""
from __future__ import annotations

import json
import socket

from gateway.devtools.testing import free_port, settings_env


def test_a_taken_port_stops_the_start_before_any_worker(settings, spawn, tmp_path):
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    log_path = tmp_path / "gateway.log"
    try:
        proc = spawn(["run"], settings_env(settings, GATEWAY_HTTP_PORT=port, GATEWAY_HTTP_HOST="127.0.0.1",
                                           GATEWAY_LOG_FORMAT="json"), log_path=log_path)
        assert proc.wait(timeout=60) == 1
    finally:
        squatter.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "gateway cannot start" in events, events
    error = next(line for line in lines if line["event"] == "gateway cannot start")
    assert f"127.0.0.1:{port}" in error["error"] and "in use" in error["error"]
    assert not {"worker started", "outbox sender started", "gateway listening"} & set(events), events
