"""Each channel is live or sandbox on its own: configuring one real channel leaves the others in
sandbox, and they still carry replies. A reply that no channel can carry is logged and counted."""
from __future__ import annotations

from structlog.testing import capture_logs

from gateway.app.metrics import REPLIES_DROPPED
from gateway.channels.modes import channel_modes
from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import ApiChannelReceiver, running_gateway, wait_for
from gateway.domain.types import Channel

CUSTOMER = "+14155550123"
OUR = "+15550001111"


async def test_one_live_channel_leaves_sms_in_sandbox_and_the_bot_still_replies(settings, pool, clean, redis_client):
    async with ApiChannelReceiver("hook-secret") as receiver:
        s = settings.with_(default_handler="echo", api_channel_webhook_url=receiver.url,
                           api_channel_webhook_secret="hook-secret")
        modes = channel_modes(s)
        assert modes[Channel.API] == "live" and modes[Channel.SMS] == "sandbox" and modes[Channel.EMAIL] == "sandbox"
        async with running_gateway(s) as (rt, url):
            status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                  twilio_inbound_params(CUSTOMER, OUR, "hello there"),
                                                  twilio_webhook_token(s))
            assert status == 200
            sms = rt.senders[Channel.SMS]

            async def replied():
                return [m for m in sms.sent if m.to == CUSTOMER]
            sent = await wait_for(replied, timeout=15, message="the bot reply never reached the SMS sandbox")
            assert sent[0].text == "You said: hello there"
            async def finished():
                return await pool.fetchrow("SELECT state, channel FROM outbox WHERE state = 'done'")
            row = await wait_for(finished, timeout=10)
            assert row["channel"] == "sms"
            assert receiver.received == []


async def test_a_reply_no_channel_can_carry_is_logged_and_counted(settings, pool, clean, redis_client, http):
    s = settings.with_(default_handler="echo")
    label = "opted_out,whatsapp_window_closed"   # SMS: opted out; WhatsApp on the same number: never wrote
    before = REPLIES_DROPPED.labels(label)._value.get()
    with capture_logs() as logs:
        async with running_gateway(s) as (rt, url):
            for text in ("STOP", "hello?"):
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(CUSTOMER, OUR, text),
                                                      twilio_webhook_token(s))
                assert status == 200

            async def dropped():
                return await pool.fetchval("SELECT count(*) FROM messages WHERE content->>'event' = 'reply_not_sent'")
            await wait_for(dropped, timeout=15, message="the reply was not recorded as not sent")
            async with http.get(f"{url}/metrics", headers={"Authorization": "Bearer admin-test-token"}) as resp:
                metrics = await resp.text()
    warnings = [e for e in logs if e["log_level"] == "warning" and e["event"].startswith("reply dropped")]
    assert warnings and warnings[0]["reasons"] == {"sms": "opted_out", "whatsapp": "whatsapp_window_closed"}
    assert REPLIES_DROPPED.labels(label)._value.get() == before + 1
    assert f'gateway_replies_dropped_total{{reasons="{label}"}}' in metrics
