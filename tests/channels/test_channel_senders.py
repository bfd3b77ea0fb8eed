"""Each channel builds its sender from its own settings; the Twilio status-callback URL belongs to
the Twilio sender alone (a WhatsApp message sent through Meta never carries it)."""
from __future__ import annotations

from types import SimpleNamespace

import aiohttp

from gateway.app.settings import Settings
from gateway.channels.sandbox import SandboxSender
from gateway.channels.senders import build_senders, sending_address, whatsapp_reengage_template
from gateway.channels.twilio.sender import TwilioSender
from gateway.channels.whatsapp.sender import WhatsAppCloudSender
from gateway.domain.types import Channel

LIVE_SMS_AND_META = Settings(
    public_url="https://gw.example.com", twilio_account_sid="AC1", twilio_auth_token="t",
    twilio_from_number="+15550001111", whatsapp_access_token="wa-token", whatsapp_phone_number_id="1234567890",
    whatsapp_reengage_template="reopen")


async def test_each_channel_gets_its_providers_sender_or_the_sandbox():
    async with aiohttp.ClientSession() as http:
        senders = build_senders(SimpleNamespace(settings=LIVE_SMS_AND_META, http=http, fetcher=None,
                                                redis=None, keys=None))
    sms, whatsapp = senders[Channel.SMS], senders[Channel.WHATSAPP]
    assert isinstance(sms, TwilioSender) and sms.status_callback_url == "https://gw.example.com/webhooks/twilio/status"
    assert isinstance(whatsapp, WhatsAppCloudSender) and not hasattr(whatsapp, "status_callback_url")
    assert isinstance(senders[Channel.EMAIL], SandboxSender) and isinstance(senders[Channel.API], SandboxSender)
    assert sending_address(LIVE_SMS_AND_META, Channel.WHATSAPP) == "1234567890"
    assert sending_address(LIVE_SMS_AND_META, Channel.SMS) == "+15550001111"
    assert whatsapp_reengage_template(LIVE_SMS_AND_META, "hi").parameters == ("hi",)
