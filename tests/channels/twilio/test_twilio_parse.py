"""Each Twilio fixture produces this normalized message (and every fixture is declared here)."""
import json
from pathlib import Path

import pytest

from gateway.channels.errors import PayloadError
from gateway.channels.twilio.adapter import parse_inbound, parse_status
from gateway.domain.types import Attachment, Channel, Inbound, Location, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures"
AC = "AC0123456789abcdef0123456789abcdef"
MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{AC}/Messages/MM8a7b6c5d4e3f20112233445566778899/Media/ME"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def inbound(name: str, **fields) -> Inbound:
    return Inbound(provider="twilio", raw=load(name), **fields)


EXPECTED_INBOUND = {
    "message__sms_text": dict(
        channel=Channel.SMS, provider_message_id="SM1f0e1d2c3b4a59687766554433221100", sender="+14155550100",
        recipient="+14155550199", text="Hi, is my order shipped?",
        extra={"account_sid": AC, "messaging_service_sid": "MG0123456789abcdef0123456789abcdef", "num_segments": "1"}),
    "message__mms_two_media": dict(
        channel=Channel.SMS, provider_message_id="MM8a7b6c5d4e3f20112233445566778899", sender="+14155550100",
        recipient="+14155550199", text="Photos of the damage",
        attachments=(Attachment(content_type="image/jpeg", url=MEDIA + "0" * 31 + "1"),
                     Attachment(content_type="image/png", url=MEDIA + "0" * 31 + "2")),
        extra={"account_sid": AC, "num_segments": "1"}),
    "message__whatsapp_text": dict(
        channel=Channel.WHATSAPP, provider_message_id="SM0123456789abcdef0123456789abcdef",
        sender="+14155550100", recipient="+14155550199", text="Hello, café & more?", profile_name="Ana",
        extra={"account_sid": AC, "wa_id": "14155550100", "num_segments": "1"}),
    "message__whatsapp_button_reply": dict(
        channel=Channel.WHATSAPP, provider_message_id="SMb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
        sender="+14155550100", recipient="+14155550199", text="Yes, confirm", profile_name="Ana",
        reply_id="confirm_yes", reply_title="Yes, confirm", in_reply_to="SMa1a2a3a4a5a6a7a8a9aaabacadaeafa0",
        extra={"account_sid": AC, "wa_id": "14155550100", "num_segments": "1", "message_type": "button"}),
    "message__whatsapp_location": dict(
        channel=Channel.WHATSAPP, provider_message_id="SMc0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
        sender="+14155550100", recipient="+14155550199", text="", profile_name="Ana",
        location=Location(37.7749295, -122.4194155, name="Head office", address="1 Market St, San Francisco, CA"),
        extra={"account_sid": AC, "wa_id": "14155550100", "num_segments": "1", "message_type": "location"}),
    "message__whatsapp_bsuid_sender": dict(
        channel=Channel.WHATSAPP, provider_message_id="SMd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
        sender="US.13491208655302741918", recipient="+14155550199", text="hola", profile_name="Luis",
        extra={"address_kind": "whatsapp_id", "account_sid": AC, "num_segments": "1"}),
    "message__sms_unknown_params": dict(
        channel=Channel.SMS, provider_message_id="SMe0e1e2e3e4e5e6e7e8e9eaebecedeeef", sender="+447700900123",
        recipient="+14155550199", text="STOP", extra={"account_sid": AC, "num_segments": "1"}),
}

EXPECTED_STATUS = {
    "status__sms_undelivered": dict(
        channel=Channel.SMS, provider_message_id="SMaaaabbbbccccddddeeeeffff00001111", status="undelivered",
        error_code="30007", recipient="+14155550100"),
    "status__whatsapp_read": dict(
        channel=Channel.WHATSAPP, provider_message_id="SMf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", status="read",
        recipient="+14155550100"),
    "status__sms_failed_opted_out": dict(
        channel=Channel.SMS, provider_message_id="SM99998888777766665555444433332222", status="failed",
        error_code="21610", error_message="Attempt to send to unsubscribed recipient", recipient="+14155550100"),
}


def test_every_fixture_is_declared():
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED_INBOUND) | set(EXPECTED_STATUS)


@pytest.mark.parametrize("name", sorted(EXPECTED_INBOUND))
def test_inbound_fixture(name):
    assert parse_inbound(load(name)) == inbound(name, **EXPECTED_INBOUND[name])


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_status_fixture(name):
    assert parse_status(load(name)) == StatusUpdate(provider="twilio", raw=load(name), **EXPECTED_STATUS[name])


def test_form_pairs_parse_like_a_mapping_and_keep_repeats_in_raw():
    pairs = list(load("message__sms_text").items()) + [("Extra", "1"), ("Extra", "2")]
    parsed = parse_inbound(pairs)
    assert parsed.provider_message_id == "SM1f0e1d2c3b4a59687766554433221100"
    assert parsed.raw["Extra"] == ["1", "2"]


def test_message_sid_falls_back_to_legacy_names():
    params = {k: v for k, v in load("message__whatsapp_text").items() if k != "MessageSid"}
    assert parse_inbound(params).provider_message_id == "SM0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("missing", [("MessageSid", "SmsMessageSid", "SmsSid"), ("From",)])
def test_missing_required_params_are_payload_errors(missing):
    params = {k: v for k, v in load("message__sms_text").items() if k not in missing}
    with pytest.raises(PayloadError):
        parse_inbound(params)


def test_bad_media_count_or_location_is_a_payload_error():
    with pytest.raises(PayloadError):
        parse_inbound({**load("message__sms_text"), "NumMedia": "two"})
    with pytest.raises(PayloadError):
        parse_inbound({**load("message__whatsapp_location"), "Latitude": "north"})


@pytest.mark.parametrize("twilio_status,normalized", [
    ("accepted", "queued"), ("scheduled", "queued"), ("queued", "queued"), ("sending", "queued"),
    ("sent", "sent"), ("delivered", "delivered"), ("partially_delivered", "delivered"), ("read", "read"),
    ("failed", "failed"), ("canceled", "failed"), ("undelivered", "undelivered"),
    ("receiving", None), ("received", None),
])
def test_status_values_are_normalized(twilio_status, normalized):
    params = {**load("status__sms_undelivered"), "MessageStatus": twilio_status}
    update = parse_status(params)
    assert (update.status if update else None) == normalized


def test_status_falls_back_to_sms_status_and_requires_one():
    params = {k: v for k, v in load("status__sms_undelivered").items() if k != "MessageStatus"}
    assert parse_status({**params, "SmsStatus": "delivered"}).status == "delivered"
    with pytest.raises(PayloadError):
        parse_status({k: v for k, v in params.items() if k != "SmsStatus"})
    with pytest.raises(PayloadError):
        parse_status({"MessageStatus": "sent"})
