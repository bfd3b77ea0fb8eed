"""WhatsAppCloudSender against FakeGraph over real HTTP: exact JSON envelopes and classifications."""
import pytest

from gateway.channels.errors import MediaDownloadError
from gateway.channels.whatsapp.sender import WhatsAppCloudSender
from gateway.domain.types import Attachment, Button, Channel, OutgoingMessage, SendOutcome, SendResult, TemplateRef
from gateway.infra.guarded_fetch import GuardedFetcher

ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "14155550100"}


def sender(fake, http, **kw) -> WhatsAppCloudSender:
    options = dict(access_token=fake.access_token, phone_number_id=fake.phone_number_id, api_base=fake.api_base)
    options.update(kw)
    return WhatsAppCloudSender(http, **options)


def msg(**kw) -> OutgoingMessage:
    return OutgoingMessage(**{"message_id": 7, "channel": Channel.WHATSAPP, "to": "+14155550100", "text": "Hi", **kw})


def bodies(fake) -> list:
    return [r.json for r in fake.requests]


async def test_text_envelope_auth_and_result(fake_graph, http):
    result = await sender(fake_graph, http).send(msg(in_reply_to="wamid.IN1"))
    req, = fake_graph.requests
    assert req.path == f"/v21.0/{fake_graph.phone_number_id}/messages"
    assert req.headers["Authorization"] == f"Bearer {fake_graph.access_token}"
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.json == {**ENVELOPE, "type": "text", "text": {"body": "Hi", "preview_url": False},
                        "context": {"message_id": "wamid.IN1"}}
    assert result == SendResult(SendOutcome.SENT, provider_message_id=fake_graph.sent[0]["_id"], status="accepted")
    assert result.provider_message_id.startswith("wamid.")


async def test_template_envelope(fake_graph, http):
    await sender(fake_graph, http).send(msg(template=TemplateRef("order_update", "pt_BR", ("Ana", "#1234"))))
    assert bodies(fake_graph) == [{**ENVELOPE, "type": "template", "template": {
        "name": "order_update", "language": {"code": "pt_BR", "policy": "deterministic"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                                                       {"type": "text", "text": "#1234"}]}]}}]


async def test_reply_buttons_are_truncated_to_20(fake_graph, http):
    buttons = (Button("yes", "Yes"), Button("later", "Remind me later please, tomorrow"))
    await sender(fake_graph, http).send(msg(text="Confirm?", buttons=buttons))
    assert bodies(fake_graph) == [{**ENVELOPE, "type": "interactive", "interactive": {
        "type": "button", "body": {"text": "Confirm?"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
            {"type": "reply", "reply": {"id": "later", "title": "Remind me later plea"}}]}}}]


async def test_four_to_ten_buttons_make_a_list(fake_graph, http):
    buttons = tuple(Button(f"s{i}", f"Slot {i} — Tuesday morning session", description="Dr. Ruiz" if i == 1 else None)
                    for i in range(1, 5))
    await sender(fake_graph, http).send(msg(text="Pick a slot", buttons=buttons, button_label="Available slots today"))
    body, = bodies(fake_graph)
    assert body["interactive"]["type"] == "list"
    assert body["interactive"]["action"]["button"] == "Available slots today"[:20]
    rows = body["interactive"]["action"]["sections"][0]["rows"]
    assert rows[0] == {"id": "s1", "title": "Slot 1 — Tuesday morning", "description": "Dr. Ruiz"}
    assert [len(r["title"]) for r in rows] == [24] * 4 and "description" not in rows[1]


async def test_list_button_label_defaults_and_more_than_ten_is_a_menu(fake_graph, http):
    s = sender(fake_graph, http)
    await s.send(msg(buttons=tuple(Button(str(i), f"Option {i}") for i in range(5))))
    assert bodies(fake_graph)[0]["interactive"]["action"]["button"] == "Choose"
    await s.send(msg(text="Pick", buttons=tuple(Button(str(i), f"O{i}") for i in range(11))))
    assert bodies(fake_graph)[1]["text"]["body"].startswith("Pick\n\n1. O0\n2. O1")


async def test_media_by_link_with_caption_on_the_first(fake_graph, http):
    result = await sender(fake_graph, http).send(msg(text="Your receipt", in_reply_to="wamid.Q", attachments=(
        Attachment(content_type="image/png", url="https://cdn.example.com/r.png"),
        Attachment(content_type="application/pdf", url="https://cdn.example.com/r.pdf", filename="r.pdf"),
        Attachment(content_type="audio/ogg", url="https://cdn.example.com/v.ogg"),
        Attachment(content_type="video/mp4", url="https://cdn.example.com/v.mp4"))))
    assert bodies(fake_graph) == [
        {**ENVELOPE, "type": "image", "image": {"link": "https://cdn.example.com/r.png", "caption": "Your receipt"},
         "context": {"message_id": "wamid.Q"}},
        {**ENVELOPE, "type": "document", "document": {"link": "https://cdn.example.com/r.pdf", "filename": "r.pdf"}},
        {**ENVELOPE, "type": "audio", "audio": {"link": "https://cdn.example.com/v.ogg"}},
        {**ENVELOPE, "type": "video", "video": {"link": "https://cdn.example.com/v.mp4"}},
    ]
    assert result.provider_message_id == fake_graph.sent[0]["_id"]
    assert result.extra["part_ids"] == [s["_id"] for s in fake_graph.sent]


async def test_audio_cannot_carry_the_text(fake_graph, http):
    await sender(fake_graph, http).send(msg(text="Listen", attachments=(
        Attachment(content_type="audio/ogg", provider_media_id="123"),)))
    assert [b["type"] for b in bodies(fake_graph)] == ["audio", "text"]
    assert bodies(fake_graph)[0]["audio"] == {"id": "123"}


async def test_first_part_failure_is_the_result(fake_graph, http):
    fake_graph.fail_next(1, code=131047)
    result = await sender(fake_graph, http).send(msg(text="Listen", attachments=(
        Attachment(content_type="audio/ogg", provider_media_id="1"),)))
    assert result.outcome is SendOutcome.FALLBACK
    assert len(fake_graph.requests) == 1  # the text part is not attempted


async def test_later_part_failure_keeps_the_message_sent(fake_graph, http):
    fake_graph.fail_next(1, code=131000, after=1)
    result = await sender(fake_graph, http).send(msg(text="Listen", attachments=(
        Attachment(content_type="audio/ogg", provider_media_id="1"),)))
    assert result.outcome is SendOutcome.SENT  # retrying would send the audio twice
    assert result.provider_message_id == fake_graph.sent[0]["_id"]
    assert result.extra == {"part_ids": [fake_graph.sent[0]["_id"]], "failed_part": {
        "outcome": "retry", "error_code": "131000", "error_message": "(#131000) Something went wrong"}}


async def test_empty_message_fails_without_a_call(fake_graph, http):
    result = await sender(fake_graph, http).send(msg(text=""))
    assert (result.outcome, result.error_code) == (SendOutcome.FAILED, "empty_message")
    assert fake_graph.requests == []


@pytest.mark.parametrize("code,outcome", [
    (131047, SendOutcome.FALLBACK), (131026, SendOutcome.FALLBACK),
    (130429, SendOutcome.THROTTLED), (131056, SendOutcome.THROTTLED), (4, SendOutcome.THROTTLED),
    (80007, SendOutcome.THROTTLED), (133016, SendOutcome.THROTTLED),
    (131050, SendOutcome.OPTED_OUT),
    (131053, SendOutcome.RETRY), (131000, SendOutcome.RETRY),
    (131048, SendOutcome.FAILED), (131049, SendOutcome.FAILED), (190, SendOutcome.FAILED),
    (132000, SendOutcome.FAILED), (132001, SendOutcome.FAILED), (131008, SendOutcome.FAILED),
    (131009, SendOutcome.FAILED), (100, SendOutcome.FAILED),
])
async def test_error_classification_by_code(fake_graph, http, code, outcome):
    fake_graph.fail_next(1, code=code, message="Provider says no", details="Because.")
    result = await sender(fake_graph, http).send(msg())
    assert (result.outcome, result.error_code, result.error_message) == (
        outcome, str(code), f"(#{code}) Provider says no - Because.")


async def test_code_wins_over_http_status(fake_graph, http):
    fake_graph.fail_next(1, code=131047, http_status=500)
    assert (await sender(fake_graph, http).send(msg())).outcome is SendOutcome.FALLBACK
    fake_graph.fail_next(1, code=130429, http_status=400, retry_after=30)
    result = await sender(fake_graph, http).send(msg())
    assert (result.outcome, result.retry_after) == (SendOutcome.THROTTLED, 30.0)


async def test_bad_token_and_timeout_and_network(fake_graph, http):
    result = await sender(fake_graph, http, access_token="wrong").send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.FAILED, "190")
    fake_graph.delay_next(1, 1.0)
    result = await sender(fake_graph, http, timeout=0.2).send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.RETRY, "timeout")
    result = await sender(fake_graph, http, api_base="http://127.0.0.1:9/v21.0").send(msg())
    assert (result.outcome, result.error_code) == (SendOutcome.RETRY, "network")


async def test_recipient_rule(fake_graph, http):
    fake_graph.fail_for("+14155550123", code=131026)
    s = sender(fake_graph, http)
    assert (await s.send(msg(to="+14155550123"))).outcome is SendOutcome.FALLBACK
    assert (await s.send(msg())).outcome is SendOutcome.SENT


async def test_mark_read(fake_graph, http):
    assert await sender(fake_graph, http).mark_read("wamid.IN1")
    assert fake_graph.requests[0].json == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1"}
    assert fake_graph.read_marks == ["wamid.IN1"]
    assert not await sender(fake_graph, http, access_token="wrong").mark_read("wamid.IN2")


async def test_download_media(fake_graph, http):
    media_id = fake_graph.add_media(b"\x89PNG...", "image/png")
    fetcher = GuardedFetcher(allow_networks=("127.0.0.0/8",), schemes=("http",))   # the fake is on 127.0.0.1
    try:
        assert await sender(fake_graph, http, fetcher=fetcher).download_media(media_id) == (b"\x89PNG...", "image/png")
        assert [r.path for r in fake_graph.requests] == [f"/v21.0/{media_id}", f"/media-download/{media_id}"]
        assert all(r.headers["Authorization"] == f"Bearer {fake_graph.access_token}" for r in fake_graph.requests)
        with pytest.raises(MediaDownloadError):
            await sender(fake_graph, http, fetcher=fetcher).download_media("unknown")
        with pytest.raises(MediaDownloadError):
            await sender(fake_graph, http, access_token="wrong", fetcher=fetcher).download_media(media_id)
    finally:
        await fetcher.close()


def test_token_not_in_repr(fake_graph, http):
    assert fake_graph.access_token not in repr(sender(fake_graph, http))
