"""Twilio webhooks signed with a SharedKey (HMAC-SHA256), alongside the Auth Token scheme (issue 11 item 11)."""
from __future__ import annotations

import aiohttp
import pytest

from gateway.channels.twilio.adapter import (HMAC_SHA256, SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                             compute_signature, signing_secret, validate_signature)
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway

KAT_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
KAT_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
SHARED_KEY = "sk_secret_12345"
SETTINGS_HEADER = "key=webhooks_sharedkey_0123456789,algorithm=HMAC_SHA256"
AUTH_TOKEN = "twilio-auth-token"


def test_sha256_vector_from_twilio_python():
    # twilio 9.13.0: RequestValidator("sk_secret_12345").compute_signature(KAT_URL, KAT_PARAMS, "HMAC_SHA256")
    assert compute_signature(KAT_URL, KAT_PARAMS, SHARED_KEY, HMAC_SHA256) == "p040HqDTLWqx/kZ8lWFsn5RyfdHiF6dZNP0jPP/NLOk="
    with_port = KAT_URL.replace(".com/", ".com:443/")
    assert validate_signature(with_port, KAT_PARAMS, "p040HqDTLWqx/kZ8lWFsn5RyfdHiF6dZNP0jPP/NLOk=",
                              SHARED_KEY, HMAC_SHA256)


def test_which_secret_signs_a_webhook():
    assert signing_secret(None, auth_token="t", shared_key="k") == ("t", "HMAC_SHA1")
    assert signing_secret(SETTINGS_HEADER, auth_token="t", shared_key="k") == ("k", "HMAC_SHA256")
    assert signing_secret("key=x", auth_token="t", shared_key="k") == ("k", "HMAC_SHA1")
    assert signing_secret(SETTINGS_HEADER, auth_token="t", shared_key=None) == (None, "HMAC_SHA256")
    assert signing_secret("key=x,algorithm=HMAC_MD5", auth_token="t", shared_key="k")[0] is None


async def post_signed(url: str, params: dict, signature: str, settings_header: str | None) -> int:
    headers = {SIGNATURE_HEADER: signature}
    if settings_header is not None:
        headers[SIGNATURE_SETTINGS_HEADER] = settings_header
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=params, headers=headers) as resp:
            return resp.status


async def test_shared_key_signed_webhook_is_accepted_next_to_auth_token_ones(settings, pool, clean, redis_client):
    twilio = pytest.importorskip("twilio.request_validator")
    s = settings.with_(twilio_account_sid="AC" + "1" * 32, twilio_auth_token=AUTH_TOKEN,
                       twilio_from_number="+15550001111", twilio_webhook_shared_key=SHARED_KEY)
    async with running_gateway(s, roles=("http",)) as (rt, url):
        endpoint = f"{url}/webhooks/twilio/inbound"

        def params(body):
            return dict(twilio_inbound_params("+14155550100", "+15550001111", body))
        p1 = params("signed with the shared key")
        good = twilio.RequestValidator(SHARED_KEY).compute_signature(endpoint, p1, "HMAC_SHA256")
        accepted = await post_signed(endpoint, p1, good, SETTINGS_HEADER)
        without_settings = await post_signed(endpoint, params("x"), twilio.RequestValidator(SHARED_KEY)
                                             .compute_signature(endpoint, params("x"), "HMAC_SHA256"), None)
        p2 = params("auth token under sha256")
        token_sha256 = await post_signed(endpoint, p2, twilio.RequestValidator(AUTH_TOKEN)
                                         .compute_signature(endpoint, p2, "HMAC_SHA256"), SETTINGS_HEADER)
        p3 = params("tampered")
        tampered = await post_signed(endpoint, {**p3, "Body": "changed"}, twilio.RequestValidator(SHARED_KEY)
                                     .compute_signature(endpoint, p3, "HMAC_SHA256"), SETTINGS_HEADER)
        classic = await post_twilio_inbound(endpoint, twilio_inbound_params("+14155550100", "+15550001111",
                                                                            "auth token sha1"), AUTH_TOKEN)
    async with running_gateway(s.with_(twilio_webhook_shared_key=None), roles=("http",)) as (rt, url):
        endpoint = f"{url}/webhooks/twilio/inbound"
        p4 = params("no shared key configured")
        unconfigured = await post_signed(endpoint, p4, twilio.RequestValidator(SHARED_KEY)
                                         .compute_signature(endpoint, p4, "HMAC_SHA256"), SETTINGS_HEADER)
    assert accepted == 200 and classic[0] == 200
    assert (without_settings, token_sha256, tampered, unconfigured) == (403, 403, 403, 403)
    bodies = sorted(r["body"] for r in await pool.fetch("SELECT body FROM messages"))
    assert bodies == ["auth token sha1", "signed with the shared key"]
