"""X-Twilio-Signature: the providers.md 6.1-6.3 vectors, port handling, JSON bodySHA256, public URL."""
from gateway.channels.twilio.adapter import compute_signature, public_url, validate_signature, validate_signature_json

KAT_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
KAT_PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
              "To": "+18005551212", "Caller": "+14158675309"}

TOKEN = "9f2c1e7a4b3d5e6f8a9b0c1d2e3f4a5b"
SID = "SM0123456789abcdef0123456789abcdef"
INBOUND_URL = "https://gateway.example.test/webhooks/twilio/inbound"
INBOUND_PARAMS = [("MessageSid", SID), ("SmsMessageSid", SID), ("SmsSid", SID),
                  ("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("From", "whatsapp:+14155550100"),
                  ("To", "whatsapp:+14155550199"), ("Body", "Hello, café & more?"), ("NumMedia", "0"),
                  ("NumSegments", "1"), ("ProfileName", "Ana"), ("WaId", "14155550100"),
                  ("SmsStatus", "received"), ("ApiVersion", "2010-04-01")]


def test_twilio_python_known_answer():
    assert compute_signature(KAT_URL, KAT_PARAMS, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert validate_signature(KAT_URL, KAT_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")


def test_default_port_variants_are_accepted_both_ways():
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert compute_signature(with_port, KAT_PARAMS, "12345") == "kvajT1Ptam85bY51eRf/AJRuM3w="
    assert validate_signature(KAT_URL, KAT_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=", "12345")
    assert validate_signature(with_port, KAT_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")
    http_url = "http://mycompany.com/myapp.php?foo=1&bar=2"
    assert validate_signature(http_url, KAT_PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=", "12345")


def test_inbound_whatsapp_vector_form_pairs_and_mapping():
    assert compute_signature(INBOUND_URL, INBOUND_PARAMS, TOKEN) == "FLcB0LGtiu2gXYPbxuMmoYy1Z+4="
    assert validate_signature(INBOUND_URL, dict(INBOUND_PARAMS), "FLcB0LGtiu2gXYPbxuMmoYy1Z+4=", TOKEN)
    assert validate_signature(INBOUND_URL, INBOUND_PARAMS, "k+fioIqsulMPPmx5apx+uUutrMA=", TOKEN)


def test_status_callback_vector():
    params = {"MessageSid": "SMaaaabbbbccccddddeeeeffff00001111", "AccountSid": "AC0123456789abcdef0123456789abcdef",
              "From": "+14155550199", "To": "+14155550100", "MessageStatus": "undelivered",
              "SmsStatus": "undelivered", "ErrorCode": "30007", "ApiVersion": "2010-04-01"}
    assert validate_signature("https://gateway.example.test/webhooks/twilio/status", params,
                              "gl+MNCXH9DFklnj9X8dRw+yufDA=", TOKEN)


def test_rejections():
    good = "FLcB0LGtiu2gXYPbxuMmoYy1Z+4="
    assert not validate_signature(INBOUND_URL, INBOUND_PARAMS, None, TOKEN)
    assert not validate_signature(INBOUND_URL, INBOUND_PARAMS, "", TOKEN)
    assert not validate_signature(INBOUND_URL, INBOUND_PARAMS, good, "other-token")
    assert not validate_signature(INBOUND_URL, INBOUND_PARAMS, good, "")
    assert not validate_signature(INBOUND_URL + "?x=1", INBOUND_PARAMS, good, TOKEN)
    tampered = [(k, "Hello" if k == "Body" else v) for k, v in INBOUND_PARAMS]
    assert not validate_signature(INBOUND_URL, tampered, good, TOKEN)
    extra = INBOUND_PARAMS + [("NewParam", "x")]  # unknown params are signed over too
    assert not validate_signature(INBOUND_URL, extra, good, TOKEN)
    assert validate_signature(INBOUND_URL, extra, compute_signature(INBOUND_URL, extra, TOKEN), TOKEN)


def test_repeated_keys_use_sorted_distinct_values():
    url = "https://example.test/hook"
    pairs = [("MediaUrl", "b"), ("MediaUrl", "a"), ("MediaUrl", "b"), ("Body", "x")]
    assert compute_signature(url, pairs, "t") == compute_signature(url, [("Body", "x"), ("MediaUrl", "a"),
                                                                        ("MediaUrl", "b")], "t")
    assert compute_signature(url, pairs, "t") != compute_signature(url, [("Body", "x"), ("MediaUrl", "b")], "t")


def test_json_body_sha256():
    body = b'{"property": "value", "boolean": true}'
    url = KAT_URL + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert compute_signature(url, {}, "12345") == "a9nBmqA0ju/hNViExpshrM61xv4="
    assert validate_signature_json(url, body, "a9nBmqA0ju/hNViExpshrM61xv4=", "12345")
    assert not validate_signature_json(url, body + b" ", "a9nBmqA0ju/hNViExpshrM61xv4=", "12345")
    assert not validate_signature_json(KAT_URL, body, compute_signature(KAT_URL, {}, "12345"), "12345")


def test_public_url_rebuilds_what_twilio_signed():
    assert public_url(None, "http", "127.0.0.1:8080", "/webhooks/twilio/inbound?x=1") == \
        "http://127.0.0.1:8080/webhooks/twilio/inbound?x=1"
    assert public_url("https://gw.example.com/", "http", "10.0.0.5:8080", "/webhooks/twilio/inbound") == \
        "https://gw.example.com/webhooks/twilio/inbound"
    assert public_url("https://gw.example.com/prefix", "http", "app:8080", "/webhooks/twilio/status") == \
        "https://gw.example.com/prefix/webhooks/twilio/status"
    # a proxy that forwards the prefix unchanged: not doubled
    assert public_url("https://gw.example.com/prefix", "http", "app:8080", "/prefix/webhooks/twilio/status") == \
        "https://gw.example.com/prefix/webhooks/twilio/status"
