"""Each Meta webhook fixture produces this batch (and every fixture is declared here)."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.channels.errors import PayloadError
from gateway.channels.whatsapp.adapter import WebhookBatch, parse_webhook
from gateway.domain.types import Attachment, Channel, Inbound, Location, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures"
PHONE_ID = "106540352242922"
T0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)   # 1700000000
COMMON = {"waba_id": "102290129340398", "display_phone_number": "15550783881"}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def first_raw(name: str, i: int = 0) -> dict:
    return load(name)["entry"][0]["changes"][0]["value"]["messages"][i]


def message(name: str, mtype: str, extra=None, **fields) -> Inbound:
    raw = first_raw(name)
    base = dict(channel=Channel.WHATSAPP, provider="meta", provider_message_id=raw["id"], sender="+14155550100",
                recipient=PHONE_ID, received_at=T0, profile_name="Ana", raw=raw,
                extra={"type": mtype, **COMMON, **(extra or {})})
    return Inbound(**{**base, **fields})


OUTBOUND_WAMID = "wamid.HBgLMTQxNTU1NTAxMDAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"

EXPECTED_MESSAGES = {
    "messages__text": lambda n: message(n, "text", text="Hi"),
    "messages__image": lambda n: message(n, "image", text="The broken part", attachments=(Attachment(
        content_type="image/jpeg", provider_media_id="1598274680938104",
        sha256="Qa3Xv9G0JmxvA9Jt6LkOJCvJQrsjWO3NPYr8XGnQmCA=", caption="The broken part"),)),
    "messages__document": lambda n: message(n, "document", attachments=(Attachment(
        content_type="application/pdf", provider_media_id="804128371934855", filename="invoice-2291.pdf",
        sha256="8Fq6sF2p3tXc5P+Jd2L9kC1eGv0oZ1mA9bQ7yWc3Hn4="),)),
    "messages__audio": lambda n: message(n, "audio", extra={"voice": True}, attachments=(Attachment(
        content_type="audio/ogg; codecs=opus", provider_media_id="1021458739256019",
        sha256="g0Wq1C8jX1r7m3vT9pZ5y2L6nHk4bE0aQdS8fUoVtYc="),)),
    "messages__interactive_button_reply": lambda n: message(
        n, "interactive", extra={"interactive_type": "button_reply"}, text="Yes, confirm",
        reply_id="confirm_yes", reply_title="Yes, confirm", in_reply_to=OUTBOUND_WAMID),
    "messages__interactive_list_reply": lambda n: message(
        n, "interactive", extra={"interactive_type": "list_reply", "description": "With Dr. Ruiz"},
        text="Tuesday 10:00", reply_id="slot_tue_10", reply_title="Tuesday 10:00",
        in_reply_to="wamid.HBgLMTQxNTU1NTAxMDAVAgARGBJGRjA2QjI1RkQ1RDRBMjU2NEUA"),
    "messages__template_button": lambda n: message(
        n, "button", text="Reschedule", reply_id="reschedule", reply_title="Reschedule",
        in_reply_to="wamid.HBgLMTQxNTU1NTAxMDAVAgARGBJCNkI2RjlBQjFGNzA0NTQ4MEYA"),
    "messages__location": lambda n: message(
        n, "location", extra={"url": "https://example.com/office"},
        location=Location(37.7749295, -122.4194155, name="Head office",
                          address="1 Market St, San Francisco, CA 94105")),
    "messages__reaction": lambda n: message(
        n, "reaction", extra={"reaction": {"message_id": OUTBOUND_WAMID, "emoji": "👍"}}),
    "messages__unsupported": lambda n: message(
        n, "unsupported", extra={"unsupported": {"type": "poll"}, "errors": first_raw(n)["errors"]}),
}

FAILED_STATUS = StatusUpdate(
    channel=Channel.WHATSAPP, provider="meta",
    provider_message_id="wamid.HBgLMTQxNTU1NTAxMDAVAgARGBJGQUlMRURNU0cwMDAxAA==",
    status="failed", occurred_at=datetime.fromtimestamp(1700000200, timezone.utc), error_code="131047",
    error_message="Re-engagement message - Message failed to send because more than 24 hours have passed "
                  "since the customer last replied to this number.",
    recipient="+14155550100", raw=load("statuses__failed")["entry"][0]["changes"][0]["value"]["statuses"][0])
MALFORMED = ["malformed__wrong_object", "malformed__entry_not_list", "malformed__message_without_id",
             "malformed__bad_timestamp"]
OTHER = ["messages__batched_mixed", "statuses__failed", "account_update__ignored"]


def test_every_fixture_is_declared():
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED_MESSAGES) | set(MALFORMED) | set(OTHER)


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_message_fixture(name):
    assert parse_webhook(load(name)) == WebhookBatch(messages=(EXPECTED_MESSAGES[name](name),))


def test_failed_status_keeps_the_error():
    assert parse_webhook(load("statuses__failed")) == WebhookBatch(statuses=(FAILED_STATUS,))


def test_batched_entries_with_messages_and_statuses():
    batch = parse_webhook(load("messages__batched_mixed"))
    assert [(m.provider_message_id, m.sender, m.recipient, m.profile_name, m.text) for m in batch.messages] == [
        ("wamid.BATCH1", "+14155550100", PHONE_ID, "Ana", "first"),
        ("wamid.BATCH2", "+447700900123", PHONE_ID, "Bo", "second"),
        ("wamid.BATCH3", "+5511987654321", "106540352242923", "Cy", "terceiro"),
    ]
    assert batch.messages[1].received_at == datetime.fromtimestamp(1700000005, timezone.utc)
    assert [(s.status, s.recipient, s.occurred_at.timestamp()) for s in batch.statuses] == [
        ("sent", "+14155550123", 1700000100), ("read", "+14155550123", 1700000160)]
    assert batch.ignored == ("status deleted wamid.HBgLMTQxNTU1NTAxMDAVAgARGBI3N0Y4RTlEMEMxQjJBM0Y0RTUA",)


def test_other_fields_are_ignored_not_rejected():
    assert parse_webhook(load("account_update__ignored")) == WebhookBatch(ignored=("field account_update",))


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_payloads(name):
    with pytest.raises(PayloadError):
        parse_webhook(load(name))


@pytest.mark.parametrize("payload", [
    [], "x", {"object": "whatsapp_business_account"},
    {"object": "whatsapp_business_account", "entry": ["nope"]},
    {"object": "whatsapp_business_account", "entry": [{"changes": {"field": "messages"}}]},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": []}]}]},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",
                                                                     "value": {"messages": {"id": "x"}}}]}]},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "statuses": [{"status": "sent"}]}}]}]},
])
def test_ill_typed_envelopes(payload):
    with pytest.raises(PayloadError):
        parse_webhook(payload)


def test_non_numeric_sender_is_kept_as_whatsapp_id():
    payload = load("messages__text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "US.13491208655302741918"
    inbound, = parse_webhook(payload).messages
    assert (inbound.sender, inbound.extra["address_kind"], inbound.profile_name) == (
        "US.13491208655302741918", "whatsapp_id", None)


def test_removed_reaction_has_empty_emoji():
    payload = load("messages__reaction")
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"]["emoji"]
    inbound, = parse_webhook(payload).messages
    assert inbound.extra["reaction"] == {"message_id": OUTBOUND_WAMID, "emoji": ""}
