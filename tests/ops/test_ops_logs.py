"""A real `gateway run` in sandbox, driven over SMS, email and chat: every line it writes is JSON
(the libraries' own log records too: flow engine, SMTP listener, aiohttp, asyncio), customers'
phone numbers and email addresses never appear in clear, and the events an operator looks for are there."""
from __future__ import annotations

import json
import signal
from email.message import EmailMessage

import aiohttp

from gateway.app.log import mask_text
from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import free_port, settings_env, smtp_deliver, wait_for, wait_ready

PHONE = "+14155550188"
EMAIL = "dee.customer@example.net"
CHAT_EMAIL = "carol.visitor@example.org"


async def test_gateway_run_writes_only_json_lines_with_addresses_masked(settings, pool, clean, redis_client,
                                                                         spawn, tmp_path):
    port, smtp_port = free_port(), free_port()
    log_path = tmp_path / "gateway.log"
    proc = spawn(["run"], settings_env(settings, GATEWAY_HTTP_PORT=port, GATEWAY_HTTP_HOST="127.0.0.1",
                                       GATEWAY_DEFAULT_HANDLER="flow", GATEWAY_SMTP_LISTEN_PORT=smtp_port,
                                       GATEWAY_LOG_LEVEL="debug", GATEWAY_LOG_FORMAT="json",
                                       PYTHONWARNINGS="always"),
                 log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, base, message=f"gateway did not start; see {log_path}")

        token = twilio_webhook_token(settings)
        for text in ("hi", "I want to talk to a human"):
            status, _ = await post_twilio_inbound(f"{base}/webhooks/twilio/inbound",
                                                  twilio_inbound_params(PHONE, "+15550001111", text), token)
            assert status == 200

        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = f"Dee <{EMAIL}>", "support@example.com", "Order"
        mail.set_content("Where is my order?")
        await smtp_deliver(smtp_port, mail)

        async with http.post(f"{base}/chat/session", json={}) as resp:
            session = await resp.json()
        ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/chat/ws")
        await ws.send_json({"type": "hello", "token": session["token"], "last_seq": 0})
        await ws.send_json({"type": "message", "client_msg_id": "c1", "text": f"hello, I am {CHAT_EMAIL}"})

        async def all_answered():
            rows = await pool.fetch("SELECT DISTINCT channel FROM messages WHERE direction = 'out'")
            return {r["channel"] for r in rows} >= {"sms", "email", "webchat"}
        await wait_for(all_answered, timeout=30, message=f"not every channel answered; see {log_path}")
        await ws.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)

    text = log_path.read_text(encoding="utf-8")
    events = []
    for line in text.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"a line that is not JSON: {line!r}") from None
    for secret in (PHONE, PHONE[1:], EMAIL, CHAT_EMAIL):
        assert secret not in text, f"{secret} in the log, unmasked"
    assert mask_text(PHONE) in text and "d***@example.net" in text
    names = [e["event"] for e in events]
    for wanted in ("gateway listening", "inbound accepted", "conversation escalated"):
        assert wanted in names, f"no {wanted!r} line"
    assert {e["channel"] for e in events if e["event"] == "inbound accepted"} >= {"sms", "email", "webchat"}
    loggers = {e.get("logger", "") for e in events}
    assert any(name.startswith("mail.log") for name in loggers), "the SMTP listener's own records are missing"
    listening = next(e for e in events if e["event"] == "gateway listening")
    assert listening["channels"]["sms"] == "sandbox" and listening["channels"]["webchat"] == "live"
    assert listening["event_loop"] == "uvloop", "the serving roles run on uvloop by default (GATEWAY_EVENT_LOOP)"


def test_addresses_are_masked_in_free_text_and_kept_apart_from_other_numbers():
    assert mask_text("MAIL FROM:<dee@example.net> to +14155550100") == "MAIL FROM:<d***@example.net> to +14*******00"
    # timestamps, ids and database URLs stay as they are
    kept = "at 2026-11-26T11:31:35 id 1234567890123 postgresql://postgres@127.0.0.1:5432/db"
    assert mask_text(kept) == kept


def test_address_fields_are_masked_whatever_their_shape_and_show_keeps_them(capsys):
    import logging

    import structlog

    from gateway.app.log import HANDLER_NAME, configure_logging, get_logger

    root_level = logging.getLogger().level
    try:
        configure_logging("info", "json")
        get_logger("t").info("sent", to="US.13491208655302741918", wa_id="14155550188", channel="whatsapp",
                             channels={"email": "sandbox"}, sender="vm:1:abc")
        configure_logging("info", "json", addresses="show")
        get_logger("t").info("sent", to="+14155550188")
        first, second = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(root_level)
        logging.captureWarnings(False)
    assert first["to"] == "US***" and first["wa_id"] == "14***" and first["channel"] == "whatsapp"
    assert first["channels"] == {"email": "sandbox"} and first["sender"] == "vm:1:abc"
    assert second["to"] == "+14155550188"


async def test_the_event_loop_is_a_setting(settings, pool, clean, redis_client, spawn, tmp_path):
    """GATEWAY_EVENT_LOOP=asyncio serves on asyncio's own loop (uvloop, the default, is checked above)."""
    port = free_port()
    log_path = tmp_path / "api.log"
    proc = spawn(["api"], settings_env(settings, GATEWAY_HTTP_PORT=port, GATEWAY_EVENT_LOOP="asyncio", GATEWAY_LOG_LEVEL="info",
                                       GATEWAY_LOG_FORMAT="json"), log_path=log_path)
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, f"http://127.0.0.1:{port}", message=f"gateway did not start; see {log_path}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    events = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    assert [e["event_loop"] for e in events if e["event"] == "gateway listening"] == ["asyncio"]
