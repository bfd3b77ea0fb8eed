"""TwilioSender against FakeTwilio over real HTTP: the exact form sent and every classification."""
import base64
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.channels.errors import MediaDownloadError
from gateway.channels.twilio.adapter import parse_status, validate_signature
from gateway.channels.twilio.sender import TwilioSender
from gateway.domain.types import Attachment, Button, Channel, OutgoingMessage, SendOutcome, SendResult, TemplateRef
from gateway.infra.guarded_fetch import GuardedFetcher


def sender(fake, http, channel=Channel.SMS, **kw) -> TwilioSender:
    options = dict(channel=channel, account_sid=fake.account_sid, auth_token=fake.auth_token,
                   api_base=fake.base_url, from_address="+14155550199")
    options.update(kw)
    return TwilioSender(http, **options)


def msg(**kw) -> OutgoingMessage:
    return OutgoingMessage(**{"message_id": 1, "channel": Channel.SMS, "to": "+14155550100", "text": "Hi", **kw})


async def test_sms_send_form_auth_and_result(fake_twilio, http):
    twilio = sender(fake_twilio, http, status_callback_url="https://gw.example.com/webhooks/twilio/status")
    result = await twilio.send(msg(
        text="Your photos",
        attachments=(Attachment(url="https://cdn.example.com/a.jpg"), Attachment(url="https://cdn.example.com/b.png"),
                     Attachment(provider_media_id="not-sendable-on-twilio"))))
    req, = fake_twilio.requests
    assert req.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert req.form == [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Your photos"),
                        ("MediaUrl", "https://cdn.example.com/a.jpg"), ("MediaUrl", "https://cdn.example.com/b.png"),
                        ("StatusCallback", "https://gw.example.com/webhooks/twilio/status")]
    expected_auth = base64.b64encode(f"{fake_twilio.account_sid}:{fake_twilio.auth_token}".encode()).decode()
    assert req.headers["Authorization"] == f"Basic {expected_auth}"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    sid = result.provider_message_id
    assert result == SendResult(SendOutcome.SENT, provider_message_id=sid, status="queued", segments=1)
    assert sid.startswith("MM") and len(sid) == 34 and sid in fake_twilio.messages


async def test_segments_come_from_the_response(fake_twilio, http):
    result = await sender(fake_twilio, http).send(msg(text="€" * 81))
    assert result.segments == 2


async def test_whatsapp_prefix_on_both_addresses(fake_twilio, http):
    s = sender(fake_twilio, http, channel=Channel.WHATSAPP, from_address="whatsapp:+14155550199")
    result = await s.send(msg(channel=Channel.WHATSAPP, text="Hola"))
    assert result.outcome is SendOutcome.SENT
    form = fake_twilio.requests[0].form
    assert ("To", "whatsapp:+14155550100") in form and ("From", "whatsapp:+14155550199") in form


async def test_messaging_service_for_sms_and_sender_override(fake_twilio, http):
    s = sender(fake_twilio, http, from_address=None, messaging_service_sid="MG" + "2" * 32)
    result = await s.send(msg())
    assert result.status == "accepted"
    assert fake_twilio.requests[0].form[:2] == [("To", "+14155550100"), ("MessagingServiceSid", "MG" + "2" * 32)]
    await s.send(msg(sender="+14155550111"))
    assert fake_twilio.requests[1].value("From") == "+14155550111"
    assert fake_twilio.requests[1].value("MessagingServiceSid") is None


async def test_buttons_become_a_numbered_menu(fake_twilio, http):
    await sender(fake_twilio, http).send(msg(text="Confirm?", buttons=(Button("y", "Yes"), Button("n", "No"))))
    assert fake_twilio.requests[0].value("Body") == "Confirm?\n\n1. Yes\n2. No"


async def test_template_sends_content_sid_and_variables(fake_twilio, http):
    s = sender(fake_twilio, http, channel=Channel.WHATSAPP)
    template = TemplateRef("HX" + "a" * 32, parameters=("Ana", "3"))
    await s.send(msg(channel=Channel.WHATSAPP, text="ignored", template=template))
    req = fake_twilio.requests[0]
    assert req.value("Body") is None
    assert req.value("ContentSid") == "HX" + "a" * 32
    assert json.loads(req.value("ContentVariables")) == {"1": "Ana", "2": "3"}
    await s.send(msg(template=TemplateRef("HX" + "b" * 32, variables={"name": "Zoë"})))
    assert json.loads(fake_twilio.requests[1].value("ContentVariables")) == {"name": "Zoë"}


@pytest.mark.parametrize("http_status,code,outcome", [
    (400, 21610, SendOutcome.OPTED_OUT),
    (400, 63016, SendOutcome.FALLBACK),
    (400, 21211, SendOutcome.FAILED),
    (400, 21408, SendOutcome.FAILED),
    (403, 20003, SendOutcome.FAILED),
    (500, 20500, SendOutcome.RETRY),
    (503, None, SendOutcome.RETRY),
    (400, 20429, SendOutcome.THROTTLED),
])
async def test_error_classification(fake_twilio, http, http_status, code, outcome):
    fake_twilio.fail_next(1, http_status=http_status, code=code, message="provider says no")
    result = await sender(fake_twilio, http).send(msg())
    assert result.outcome is outcome
    assert result.error_code == (str(code) if code else f"http_{http_status}")
    assert result.error_message == "provider says no"
    assert result.provider_message_id is None


async def test_429_with_retry_after(fake_twilio, http):
    fake_twilio.fail_next(1, http_status=429, code=20429, message="Too Many Requests", retry_after=7)
    result = await sender(fake_twilio, http).send(msg())
    assert (result.outcome, result.error_code, result.retry_after) == (SendOutcome.THROTTLED, "20429", 7.0)


async def test_bad_credentials_fail_permanently(fake_twilio, http):
    result = await sender(fake_twilio, http, auth_token="wrong").send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.FAILED, "20003")


async def test_fake_validates_like_twilio(fake_twilio, http):
    result = await sender(fake_twilio, http).send(msg(text=""))
    assert (result.outcome, result.error_code) == (SendOutcome.FAILED, "21619")


async def test_per_recipient_rule(fake_twilio, http):
    fake_twilio.fail_for("+14155550123")
    s = sender(fake_twilio, http)
    assert (await s.send(msg(to="+14155550123"))).outcome is SendOutcome.OPTED_OUT
    assert (await s.send(msg())).outcome is SendOutcome.SENT
    assert (await s.send(msg(to="+14155550123"))).outcome is SendOutcome.OPTED_OUT


async def test_timeout_is_retry(fake_twilio, http):
    fake_twilio.delay_next(1, 1.0)
    result = await sender(fake_twilio, http, timeout=0.2).send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.RETRY, "timeout")


async def test_connection_refused_is_retry(http):
    s = TwilioSender(http, channel=Channel.SMS, account_sid="AC1", auth_token="t", api_base="http://127.0.0.1:9",
                     from_address="+1")
    result = await s.send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.RETRY, "network")


async def test_api_key_is_the_basic_auth_username(fake_twilio, http):
    await sender(fake_twilio, http, api_key_sid="SK" + "3" * 32).send(msg())
    user = base64.b64decode(fake_twilio.requests[0].headers["Authorization"][6:]).decode().split(":")[0]
    assert user == "SK" + "3" * 32


def test_token_not_in_repr(fake_twilio, http):
    assert fake_twilio.auth_token not in repr(sender(fake_twilio, http))


async def test_media_download_requires_basic_auth(fake_twilio, http):
    url = fake_twilio.add_media("photo", b"\xff\xd8jpeg", "image/jpeg")
    fetcher = GuardedFetcher(allow_networks=("127.0.0.0/8",), schemes=("http",))   # the fake is on 127.0.0.1
    try:
        assert await sender(fake_twilio, http, fetcher=fetcher).download_media(url) == (b"\xff\xd8jpeg", "image/jpeg")
        with pytest.raises(MediaDownloadError):
            await sender(fake_twilio, http, auth_token="wrong", fetcher=fetcher).download_media(url)
    finally:
        await fetcher.close()


async def test_status_callback_is_signed_like_twilio(fake_twilio, http):
    received = []

    async def handler(request):
        form = [(k, v) for k, v in (await request.post()).items()]
        ok = validate_signature(str(request.url), form, request.headers.get("X-Twilio-Signature"),
                                fake_twilio.auth_token)
        received.append((ok, parse_status(form)))
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/status", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        result = await sender(fake_twilio, http).send(msg())
        status, _ = await fake_twilio.send_status_callback(
            str(server.make_url("/webhooks/twilio/status")), result.provider_message_id, "undelivered",
            error_code=30007)
    assert status == 200
    (ok, update), = received
    assert ok
    assert (update.provider_message_id, update.status, update.error_code, update.recipient) == (
        result.provider_message_id, "undelivered", "30007", "+14155550100")


async def test_a_template_name_is_sent_as_its_configured_content_sid(fake_twilio, http):
    from gateway.app.settings import SettingsError, load_settings, parse_content_sids

    sid = "HX" + "c" * 32
    s = sender(fake_twilio, http, channel=Channel.WHATSAPP, from_address="whatsapp:+14155550199",
               content_sids=parse_content_sids(f"cart_reminder={sid}"))
    await s.send(msg(channel=Channel.WHATSAPP, template=TemplateRef("cart_reminder", parameters=("Ana",))))
    req, = fake_twilio.requests
    assert ("ContentSid", sid) in req.form and ("ContentVariables", '{"1": "Ana"}') in req.form
    with pytest.raises(SettingsError) as err:
        load_settings({"GATEWAY_TWILIO_CONTENT_SIDS": "cart_reminder=cart_reminder"}, dotenv=None)
    assert "GATEWAY_TWILIO_CONTENT_SIDS" in str(err.value)
