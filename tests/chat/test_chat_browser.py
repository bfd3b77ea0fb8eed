"""The widget in a real headless Chromium: open the demo page, chat with the bot, reload, see history.

Needs Debian's `chromium`, node and playwright-core (npm, in tests/chat/browser/node_modules; no
browser download). `.ci/browser` installs them; this test runs it once when something is missing
(set GATEWAY_TEST_NO_INSTALL=1 to skip instead) and skips with the reason if that fails.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from chat_support import chat_gateway

from gateway.devtools.testing import drive_browser, ensure_browser
from gateway.domain import thread
from gateway.domain.types import Button

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean")]   # slow: drives a real headless Chromium

HERE = Path(__file__).resolve().parent
BROWSER_DIR = HERE / "browser"
REPO = HERE.parent.parent


@pytest.fixture(scope="module")
def browser_ready():
    reason = ensure_browser(REPO, BROWSER_DIR)
    if reason:
        pytest.skip(reason)


async def test_widget_in_headless_chromium(browser_ready, chat_settings, pool, tmp_path):
    shots = Path(os.environ.get("GATEWAY_TEST_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    async with chat_gateway(chat_settings) as (rt, base):
        async def on_step(name: str) -> None:
            assert name == "reloaded"
            # an agent answers with quick replies while the page is open
            cid = await pool.fetchval("SELECT id FROM conversations")
            effects = thread.Effects()
            async with pool.acquire() as conn, conn.transaction():
                await thread.queue_outbound(conn, cid, text="Was that helpful?", author_type="agent",
                                            buttons=(Button("yes", "Yes"), Button("no", "No")), effects=effects)
            await rt.publish_effects(effects)

        result, stderr = await drive_browser(BROWSER_DIR / "drive_widget.mjs", base, shots, on_step=on_step,
                                             cwd=BROWSER_DIR)
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


async def test_widget_never_resends_a_message_the_server_refused(browser_ready, chat_settings, pool):
    """A pending message the server refuses (NUL) is sent once, shown as failed with the reason, and
    dropped: three reloads later it was still sent only once. Typed text is cleaned, not refused."""
    async with chat_gateway(chat_settings) as (rt, base):
        async def no_steps(name: str) -> None:
            raise AssertionError(f"unexpected step {name}")

        result, stderr = await drive_browser(BROWSER_DIR / "drive_widget_refused.mjs", base, on_step=no_steps,
                                             cwd=BROWSER_DIR)
    assert result is not None, f"the browser script printed no result; stderr: {stderr[-2000:]}"
    assert "error" not in result, result["error"]
    assert not result.get("pageErrors"), result["pageErrors"]
    assert result["sentBad"] == 1
    assert result["pending"] == []
    assert len(result["failed"]) == 1 and "NUL" in result["failed"][0]
    assert result["echoed"]
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE body LIKE 'x%y'") == 0
