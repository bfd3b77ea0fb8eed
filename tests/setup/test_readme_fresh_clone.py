"""The README's promise: on a fresh clone, its run command gives a gateway that reaches /readyz.

Clones the committed tree, runs the README's run command literally (install included) with an
empty data dir and no database/redis URLs (so the embedded servers start), waits for /readyz,
then presses Ctrl-C (SIGINT to the process group) and checks nothing is left running.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from gateway.devtools.testing import free_port

pytestmark = pytest.mark.slow   # clones the repository and runs the README commands

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> tuple[str, str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Two commands\s+```sh\n(.*?)```", text, re.S)
    assert block, "README must open with the two set-up commands"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2, lines
    return lines[0], lines[1]


def test_readme_has_run_and_test_commands_and_ci_runs_the_test_one():
    run_cmd, test_cmd = readme_commands()
    assert "run" in run_cmd and "test" in test_cmd
    assert test_cmd in (REPO / ".ci" / "run").read_text()


@pytest.mark.timeout(600)
def test_fresh_clone_runs_and_reaches_readyz(tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    run_cmd, _ = readme_commands()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_", "VIRTUAL_ENV", "PYTEST"))}
    env.update({"GATEWAY_HTTP_PORT": str(port), "GATEWAY_DATA_DIR": str(tmp_path / "data"),
                "GATEWAY_LOG_FORMAT": "json"})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(run_cmd, shell=True, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 480
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    ready = resp.status == 200
                    break
            except OSError:
                time.sleep(1)
        assert ready, f"never ready; log:\n{log_path.read_text()[-3000:]}"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(60) == 0 or proc.returncode in (-signal.SIGINT, 130, 2), log_path.read_text()[-2000:]
        time.sleep(1)
        left = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"left running after Ctrl-C: {[p.cmdline() for p in left]}"
        pg_procs = [p for p in psutil.process_iter(["cmdline"])
                    if str(tmp_path / "data") in " ".join(p.info["cmdline"] or [])]
        assert not pg_procs, f"embedded servers still running: {[p.info['cmdline'] for p in pg_procs]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_every_setting_is_documented_in_the_readme():
    from gateway.app.settings import ENV

    text = (REPO / "README.md").read_text()
    missing = [name for name in ENV if name not in text]
    assert missing == [], f"document these settings in README.md: {missing}"
