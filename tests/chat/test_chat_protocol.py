"""Pure parts of the web chat: tokens, frame parsing, the rate limit, the Origin check."""
from __future__ import annotations

import json

import pytest

from gateway.channels.webchat import protocol
from gateway.channels.webchat.tokens import (TokenError, _b64encode, issue_session, sign_identity, verify_identity,
                                             verify_session)


def test_session_token_round_trip_and_tampering():
    s = issue_session("k", now=1000, ttl=60)
    assert verify_session("k", s.token, now=1059).visitor_id == s.visitor_id
    with pytest.raises(TokenError) as exc:
        verify_session("k", s.token, now=1060)
    assert exc.value.code == "expired_token"
    head, payload, sig = s.token.split(".")
    other = _b64encode(json.dumps({"vid": "v_someone_else", "exp": 99999}).encode())
    for bad in (f"{head}.{other}.{sig}", s.token[:-2] + "xx", "v2." + payload + "." + sig, "", "a.b", None):
        with pytest.raises(TokenError) as exc:
            verify_session("k", bad, now=1000)
        assert exc.value.code == "invalid_token"
    with pytest.raises(TokenError):
        verify_session("another key", s.token, now=1000)


def test_identity_token_names_a_contact():
    token = sign_identity("shh", {"email": "Ann@Example.COM", "name": "Ann", "exp": 2000})
    ref = verify_identity("shh", token, now=1000)
    assert (ref.email, ref.name) == ("ann@example.com", "Ann")
    assert verify_identity("shh", sign_identity("shh", {"phone": "+44 20 7946 0958", "exp": 2000}),
                           now=1000).phone == "+442079460958"
    payload, sig = token.split(".")
    assert verify_identity("shh", f"{payload}.{sig.upper()}", now=1000).email == "ann@example.com"
    cases = [("shh", token, 2000, "identity_expired"), ("other", token, 1000, "identity_invalid"),
             (None, token, 1000, "identity_unavailable"),
             ("shh", sign_identity("shh", {"email": "x@example.com"}), 1000, "identity_invalid"),
             ("shh", sign_identity("shh", {"name": "x", "exp": 2000}), 1000, "identity_invalid"),
             ("shh", "no-dot", 1000, "identity_invalid")]
    for secret, tok, now, code in cases:
        with pytest.raises(TokenError) as exc:
            verify_identity(secret, tok, now=now)
        assert exc.value.code == code


@pytest.mark.parametrize("raw, expected", [
    ('{"type":"message","client_msg_id":"a-1","text":"hi"}', protocol.SendMessage("a-1", "hi")),
    ('{"type":"message","client_msg_id":"a","text":"","reply_id":"yes"}', protocol.SendMessage("a", "", "yes")),
    ('{"type":"hello","token":"t","last_seq":4,"conversation_id":9}', protocol.Hello("t", 4, 9)),
    ('{"type":"hello","token":"t","last_seq":null}', protocol.Hello("t", 0, None)),
    ('{"type":"typing","state":"on"}', protocol.Typing(True)),
    ('{"type":"read","seq":3}', protocol.Read(3)),
    ('{"type":"identify","token":"x.y"}', protocol.Identify("x.y")),
    ('{"type":"ping"}', protocol.Ping()),
])
def test_frames_parse(raw, expected):
    assert protocol.parse_frame(raw) == expected


@pytest.mark.parametrize("raw, code", [
    ("[]", "bad_frame"), ("nope", "bad_frame"), ('{"type":"shout"}', "bad_frame"),
    ('{"type":"message","text":"no id"}', "invalid_field"),
    ('{"type":"message","client_msg_id":"x","text":"   "}', "invalid_field"),
    ('{"type":"message","client_msg_id":"x","text":5}', "invalid_field"),
    ('{"type":"read","seq":true}', "invalid_field"), ('{"type":"read","seq":0}', "invalid_field"),
    ('{"type":"typing","state":"maybe"}', "invalid_field"), ('{"type":"hello"}', "invalid_token"),
    (json.dumps({"type": "message", "client_msg_id": "x", "text": "é" * (protocol.MAX_TEXT + 1)}), "too_large"),
    ("x" * (protocol.MAX_FRAME_BYTES + 1), "too_large"),
])
def test_bad_frames_are_named(raw, code):
    with pytest.raises(protocol.FrameError) as exc:
        protocol.parse_frame(raw)
    assert exc.value.code == code


def test_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = protocol.TokenBucket(rate=5, burst=10, clock=lambda: now[0])
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.2)
    now[0] += 0.2
    assert bucket.take() == 0.0 and bucket.take() > 0
    now[0] += 100
    assert sum(bucket.take() == 0.0 for _ in range(20)) == 10


def test_retry_after_never_tells_a_limited_client_to_retry_at_once():
    now = [0.0]
    bucket = protocol.TokenBucket(rate=5, burst=1, clock=lambda: now[0])
    assert bucket.take() == 0.0
    now[0] += 0.199   # a token is 1 ms away: rounding to the nearest centisecond said 0.0 (seen under load)
    wait = bucket.take()
    assert 0 < wait < 0.005 and protocol.retry_after(wait) == 0.01
    assert protocol.retry_after(0.2) == 0.2 and protocol.retry_after(1.1) == 1.1 and protocol.retry_after(0.201) == 0.21


@pytest.mark.parametrize("origin, host, allowed, ok", [
    (None, "gw.example", (), True),                                  # not a browser
    ("https://gw.example", "gw.example", (), True),                  # same origin
    ("http://localhost:3000", "gw.example", (), True),
    ("http://127.0.0.1:8080", "gw.example", (), True),
    ("https://evil.example", "gw.example", (), False),
    ("null", "gw.example", (), False),
    ("https://shop.example", "gw.example", ("https://shop.example",), True),
    ("https://shop.example/", "gw.example", ("https://SHOP.example",), True),
    ("http://localhost:3000", "gw.example", ("https://shop.example",), False),
    ("https://gw.example", "gw.example", ("https://shop.example",), True),
    ("https://any.example", "gw.example", ("*",), True),
])
def test_origin_allow_list(origin, host, allowed, ok):
    assert protocol.origin_allowed(origin, host, allowed) is ok


def test_client_msg_id_is_recovered_only_for_its_visitor():
    assert protocol.client_msg_id_of("v_abc:m-1", "v_abc") == "m-1"
    assert protocol.client_msg_id_of("v_abc:m-1", "v_other") is None
    assert protocol.client_msg_id_of(None) is None
