"""`pip install` of the built wheel runs: migrations and the default flows ship inside it.

Builds the wheel from a copy of the source tree, installs it (no editable link, no checkout) into a new
venv outside the repository, starts `gateway run` from an unrelated directory with an empty data dir
(so the embedded PostgreSQL and Redis start and the migrations are applied from the wheel), and
checks /readyz answers 200 and the shipped support flow answers a message in sandbox.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gateway.devtools.testing import free_port

pytestmark = pytest.mark.slow   # builds the wheel and installs it in a new venv

REPO = Path(__file__).resolve().parents[2]
_SKIP = shutil.ignore_patterns(".git", ".venv", ".gateway", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                               "node_modules", "docs")


def _request(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read() or b"{}")


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_SKIP)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(out), str(source)], check=True, capture_output=True)
    (wheel,) = out.glob("messaging_gateway-*.whl")
    return wheel


def test_wheel_carries_migrations_and_flows(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "migrations").glob("*.sql"):
        assert f"gateway/_shipped/migrations/{path.name}" in names
    for path in (REPO / "flows").rglob("*.yaml"):
        assert f"gateway/_shipped/flows/{path.relative_to(REPO / 'flows').as_posix()}" in names
    assert "gateway/channels/webchat/static/widget.js" in names
    console = {p.name for p in (REPO / "gateway" / "static" / "console").iterdir()}
    assert {"index.html", "app.js", "console.css"} <= console
    assert {f"gateway/static/console/{name}" for name in console} <= names, "the agent console ships in the wheel"


@pytest.mark.timeout(420)
def test_installed_wheel_runs_and_answers_in_sandbox(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    # The dependencies come from this test run's environment (a path entry, not its .pth files, so the
    # editable install of the checkout stays invisible): only the gateway itself comes from the wheel.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, cwd=elsewhere).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
                           check=True, capture_output=True, text=True, cwd=elsewhere).stdout.strip()
    assert where.startswith(site), f"gateway imported from {where}, not from the installed wheel"

    port, token = free_port(), "wheel-admin-token"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_", "VIRTUAL_ENV", "PYTEST", "PYTHONPATH"))}
    env.update({"GATEWAY_HTTP_PORT": str(port), "GATEWAY_DATA_DIR": str(tmp_path / "data"),
                "GATEWAY_ADMIN_TOKEN": token, "GATEWAY_LOG_FORMAT": "json"})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "gateway"), "run"], cwd=elsewhere, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _request(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"never ready; log:\n{log_path.read_text()[-3000:]}")
        status, sent = _request(f"{base}/api/v1/inbound", {"client_message_id": "w-1", "text": "hello",
                                                           "contact": {"external_id": "wheel-1"}}, token)
        assert status == 201, sent
        url = f"{base}/api/v1/conversations/{sent['conversation_id']}/messages"
        replies: list = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            time.sleep(0.3)
            replies = [m for m in _request(url, token=token)[1]["messages"] if m["direction"] == "out"]
        assert replies, f"no bot reply; log:\n{log_path.read_text()[-3000:]}"
        assert replies[0]["body"].strip() and replies[0]["author_type"] == "bot", replies[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
