"""The widget in a real headless Chromium: open the demo page, chat with the bot, reload, see history.

Needs Debian's `chromium`, node and playwright-core (npm, in tests/chat/browser/node_modules; no
browser download). `.ci/browser` installs them; this test runs it once when something is missing
(set GATEWAY_TEST_NO_INSTALL=1 to skip instead) and skips with the reason if that fails.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway import thread
from gateway.types import Button

from chat_support import chat_gateway

pytestmark = pytest.mark.usefixtures("clean")

HERE = Path(__file__).resolve().parent
BROWSER_DIR = HERE / "browser"
REPO = HERE.parent.parent


def _missing() -> str | None:
    if not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"):
        return "Debian's chromium is not installed"
    if not shutil.which("node"):
        return "node is not installed"
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        return "playwright-core is not installed in tests/chat/browser/node_modules"
    return None


@pytest.fixture(scope="module")
def browser_ready():
    missing = _missing()
    if missing and not os.environ.get("GATEWAY_TEST_NO_INSTALL"):
        proc = subprocess.run(["bash", str(REPO / ".ci" / "browser")], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            pytest.skip(f"browser test: {missing}, and .ci/browser failed: {proc.stderr.strip()[-300:]}")
        missing = _missing()
    if missing:
        pytest.skip(f"browser test: {missing} (run .ci/browser to install)")


async def test_widget_in_headless_chromium(browser_ready, chat_settings, pool, tmp_path):
    shots = Path(os.environ.get("GATEWAY_TEST_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    async with chat_gateway(chat_settings) as (rt, base):
        node = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "drive_widget.mjs"), base, str(shots), cwd=BROWSER_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        result = None
        try:
            async with asyncio.timeout(120):
                while line := (await node.stdout.readline()).decode():
                    if line.startswith("step reloaded"):
                        # an agent answers with quick replies while the page is open
                        cid = await pool.fetchval("SELECT id FROM conversations")
                        effects = thread.Effects()
                        async with pool.acquire() as conn, conn.transaction():
                            await thread.queue_outbound(conn, cid, text="Was that helpful?", author_type="agent",
                                                        buttons=(Button("yes", "Yes"), Button("no", "No")),
                                                        effects=effects)
                        await rt.publish_effects(effects)
                        node.stdin.write(b"go\n")
                        await node.stdin.drain()
                    elif line.startswith("result "):
                        result = json.loads(line[len("result "):])
                await node.wait()
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
        stderr = (await node.stderr.read()).decode()
    assert result is not None, f"the browser script printed no result; stderr: {stderr[-2000:]}"
    assert "error" not in result, result["error"]
    assert not result.get("pageErrors"), result["pageErrors"]
    assert result["afterReload"] == ["hello browser", "You said: hello browser"]
    assert result["final"] == ["hello browser", "You said: hello browser", "Was that helpful?", "Yes",
                               "You said: Yes"]
    assert result["quickLeft"] == 0
    reply = await pool.fetchrow("SELECT content FROM messages WHERE direction = 'in' AND body = 'Yes'")
    assert reply["content"]["reply_id"] == "yes"
    for name in ("1-replied", "2-reloaded", "3-quick-replies", "4-final"):
        assert (shots / f"{name}.png").stat().st_size > 1000
