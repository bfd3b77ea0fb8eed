"""Simulated provider webhooks are signed so the real verifiers accept them, over real HTTP."""
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.channels.twilio.adapter import parse_inbound, public_url, validate_signature
from gateway.channels.whatsapp.adapter import parse_webhook, verify_signature
from gateway.devtools.fakes.graph import FakeGraph, inbound_text_payload, status_payload
from gateway.devtools.simulate_providers import (meta_inbound_payload, post_meta_webhook, post_twilio_inbound,
                                                 twilio_inbound_params)
from gateway.domain.types import Channel

TOKEN = "twilio-token"
SECRET = "meta-secret"


@pytest.fixture
async def receiver():
    """A stand-in gateway that verifies like the real one and keeps what it parsed."""
    seen: dict = {"twilio": [], "meta": []}
    config = {"public_url": None}

    async def twilio(request):
        form = [(k, v) for k, v in (await request.post()).items()]
        url = public_url(config["public_url"], request.scheme, request.host, request.path_qs)
        if not validate_signature(url, form, request.headers.get("X-Twilio-Signature"), TOKEN):
            return web.Response(status=403)
        seen["twilio"].append(parse_inbound(form))
        return web.Response(text="<Response/>", content_type="text/xml")

    async def meta(request):
        raw = await request.read()
        if not verify_signature(raw, request.headers.get("X-Hub-Signature-256"), SECRET):
            return web.Response(status=403)
        seen["meta"].append(parse_webhook(json.loads(raw)))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhooks/twilio/inbound", twilio)
    app.router.add_post("/webhooks/whatsapp", meta)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen, config
    await server.close()


def test_twilio_params_shape():
    params = dict(twilio_inbound_params("+14155550100", "+14155550199", "Hola 😀", whatsapp=True,
                                        media_urls=("https://x.test/a.jpg",), profile_name="Ana"))
    assert params["MessageSid"].startswith("MM") and len(params["MessageSid"]) == 34
    assert (params["From"], params["To"], params["WaId"], params["ProfileName"]) == (
        "whatsapp:+14155550100", "whatsapp:+14155550199", "14155550100", "Ana")
    assert (params["NumMedia"], params["MediaUrl0"], params["MediaContentType0"]) == (
        "1", "https://x.test/a.jpg", "image/jpeg")
    assert params["NumSegments"] == "1"
    first = twilio_inbound_params("+1", "+2", "a")[0][1]
    assert first != twilio_inbound_params("+1", "+2", "a")[0][1]   # fresh sid each time


async def test_post_twilio_inbound_is_accepted(receiver):
    server, seen, _ = receiver
    params = twilio_inbound_params("+14155550100", "+14155550199", "Hello, café & more?")
    status, body = await post_twilio_inbound(str(server.make_url("/webhooks/twilio/inbound")), params, TOKEN)
    assert (status, body) == (200, "<Response/>")
    inbound, = seen["twilio"]
    assert (inbound.channel, inbound.sender, inbound.text) == (Channel.SMS, "+14155550100", "Hello, café & more?")
    status, _ = await post_twilio_inbound(str(server.make_url("/webhooks/twilio/inbound")), params, "wrong")
    assert status == 403


async def test_post_twilio_inbound_signs_over_the_public_url(receiver):
    server, seen, config = receiver
    config["public_url"] = "https://gw.example.com/prefix"
    url = str(server.make_url("/webhooks/twilio/inbound"))
    params = twilio_inbound_params("+14155550100", "+14155550199", "hi", whatsapp=True)
    assert (await post_twilio_inbound(url, params, TOKEN))[0] == 403          # signed over the local URL
    assert (await post_twilio_inbound(url, params, TOKEN, public_url="https://gw.example.com/prefix"))[0] == 200
    assert seen["twilio"][0].channel is Channel.WHATSAPP


async def test_post_meta_webhook_and_fake_graph_send_webhook(receiver):
    server, seen, _ = receiver
    url = str(server.make_url("/webhooks/whatsapp"))
    payload = meta_inbound_payload("+14155550100", "Hi there", "106540352242922", reply_to="wamid.OUT1")
    assert (await post_meta_webhook(url, payload, SECRET))[0] == 200
    assert (await FakeGraph.send_webhook(url, status_payload("wamid.OUT1", "failed", "+14155550100",
                                                              "106540352242922", error_code=131047), SECRET))[0] == 200
    assert (await post_meta_webhook(url, payload, "wrong"))[0] == 403
    first, second = seen["meta"]
    msg, = first.messages
    assert (msg.sender, msg.recipient, msg.text, msg.profile_name, msg.in_reply_to) == (
        "+14155550100", "106540352242922", "Hi there", "Ana", "wamid.OUT1")
    update, = second.statuses
    assert (update.provider_message_id, update.status, update.error_code, update.recipient) == (
        "wamid.OUT1", "failed", "131047", "+14155550100")


@pytest.mark.parametrize("message,check", [
    ({"type": "video", "video": {"id": "9", "mime_type": "video/mp4", "sha256": "h", "caption": "clip"}},
     lambda m: (m.text, m.attachments[0].provider_media_id, m.attachments[0].content_type) == (
         "clip", "9", "video/mp4")),
    ({"type": "sticker", "sticker": {"id": "5", "mime_type": "image/webp", "sha256": "h", "animated": False}},
     lambda m: (m.attachments[0].provider_media_id, m.extra["animated"]) == ("5", False)),
    ({"type": "contacts", "contacts": [{"name": {"formatted_name": "Bo Li"}, "phones": [{"phone": "+1 555"}]}]},
     lambda m: (m.text, m.extra["contacts"][0]["phones"][0]["phone"]) == ("Shared contact: Bo Li", "+1 555")),
    ({"type": "order", "order": {"catalog_id": "c1", "text": "for Friday", "product_items": []}},
     lambda m: (m.text, m.extra["order"]["catalog_id"]) == ("for Friday", "c1")),
    ({"type": "system", "system": {"body": "User changed number", "type": "user_changed_number"}},
     lambda m: (m.text, m.extra["system"]["type"]) == ("User changed number", "user_changed_number")),
    ({"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}},
     lambda m: (m.text, m.extra["nfm_reply"]) == ("", {"response_json": "{}"})),
])
def test_other_message_types(message, check):
    batch = parse_webhook(inbound_text_payload("+14155550100", "", "106540352242922", message=message))
    assert check(batch.messages[0])
