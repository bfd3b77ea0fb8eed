"""X-Hub-Signature-256 (providers.md 6.4) and the hub.challenge subscription check."""
import json
from pathlib import Path

from gateway.channels.whatsapp.adapter import signature_header, verify_signature, verify_subscription

SECRET = "test_app_secret_0123456789abcdef"
EXPECTED = "sha256=91acaad4ac4015f9049ce17f726a1dc64ce4499d3a8f6bcadfac2cbf901f3d74"
BODY = (b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
        b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":'
        b'"106540352242922"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"14155550100"}],"messages":[{"from":'
        b'"14155550100","id":"wamid.TESTID123","timestamp":"1700000000","type":"text","text":{"body":"Hi"}}]},'
        b'"field":"messages"}]}]}')


def test_vector_verifies():
    assert len(BODY) == 414
    assert signature_header(BODY, SECRET) == EXPECTED
    assert verify_signature(BODY, EXPECTED, SECRET)


def test_vector_body_is_the_text_fixture():
    fixture = json.loads((Path(__file__).parent / "fixtures" / "messages__text.json").read_text())
    assert json.dumps(fixture, separators=(",", ":")).encode() == BODY


def test_reserialized_or_altered_bodies_fail():
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    assert not verify_signature(pretty, EXPECTED, SECRET)
    assert not verify_signature(BODY + b"\n", EXPECTED, SECRET)
    assert not verify_signature(BODY, EXPECTED, "other_secret")
    assert not verify_signature(BODY, EXPECTED, "")


def test_malformed_headers_fail():
    assert not verify_signature(BODY, None, SECRET)
    assert not verify_signature(BODY, EXPECTED[7:], SECRET)                 # no prefix
    assert not verify_signature(BODY, "sha1=" + EXPECTED[7:], SECRET)
    assert not verify_signature(BODY, EXPECTED.upper().replace("SHA256", "sha256"), SECRET)
    assert not verify_signature(BODY, EXPECTED + "0", SECRET)               # 72 chars


def test_subscription_challenge():
    query = {"hub.mode": "subscribe", "hub.verify_token": "my-verify", "hub.challenge": "1158201444"}
    assert verify_subscription(query, "my-verify") == "1158201444"
    assert verify_subscription(query, "other") is None
    assert verify_subscription({**query, "hub.mode": "unsubscribe"}, "my-verify") is None
    assert verify_subscription({k: v for k, v in query.items() if k != "hub.challenge"}, "my-verify") is None
    assert verify_subscription({**query, "hub.verify_token": ""}, "") is None   # unset token never matches
