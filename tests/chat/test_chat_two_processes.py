"""Two gateway processes: a tab on process A gets what process B wrote (Redis pub/sub fan-out)."""
from __future__ import annotations

import pytest
from chat_support import chat_gateway, new_session, open_tab

from gateway.devtools.testing import free_port, settings_env, wait_ready

pytestmark = pytest.mark.usefixtures("clean")


async def test_tab_on_one_process_gets_replies_written_by_another(chat_settings, http, spawn, tmp_path):
    port_b = free_port()
    base_b = f"http://127.0.0.1:{port_b}"
    # B: a separate `gateway run` process (HTTP + worker: the bot answers there)
    spawn(["run"], settings_env(chat_settings, GATEWAY_HTTP_PORT=port_b, GATEWAY_HTTP_HOST="127.0.0.1"),
          log_path=tmp_path / "gateway-b.log")

    await wait_ready(http, base_b, message=f"process B did not start; see {tmp_path / 'gateway-b.log'}")

    # A: HTTP only, in this process: it has no worker, so every reply is written by B
    async with chat_gateway(chat_settings, roles=("http",)) as (rt_a, base_a):
        session = await new_session(http, base_a)
        tab_a = await open_tab(http, base_a, session["token"])
        tab_b = await open_tab(http, base_b, session["token"])      # the same visitor's other tab, on B

        await tab_a.say("two-1", "hello from A")
        assert (await tab_a.next("ack"))["seq"] == 1
        reply = await tab_a.next("message", direction="out", timeout=20)
        assert reply["text"] == "You said: hello from A"
        assert [m["text"] for m in (await tab_b.next("message", direction="in"),
                                    await tab_b.next("message", direction="out"))] == [
            "hello from A", "You said: hello from A"]

        # and the other way: written on B's socket, shown on A's
        await tab_b.say("two-2", "now from B")
        assert (await tab_a.next("message", client_msg_id="two-2"))["text"] == "now from B"
        assert (await tab_a.next("message", direction="out"))["text"] == "You said: now from B"
        await tab_a.close()
        await tab_b.close()
