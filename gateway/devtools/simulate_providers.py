"""Build, sign and post the inbound webhooks Twilio, Meta and Mailgun would send.

Used by `gateway simulate sms|whatsapp|email`, by the fake provider servers (status callbacks,
webhooks) and by tests. The requests are byte-for-byte what the provider sends: a form body
signed with X-Twilio-Signature, or compact JSON signed with X-Hub-Signature-256.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import secrets
import time
import uuid
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp

from gateway.app.settings import Settings
from gateway.channels.email.secrets import email_webhook_key
from gateway.channels.sms_segments import count_segments
from gateway.channels.twilio.adapter import SIGNATURE_HEADER as TWILIO_SIGNATURE_HEADER
from gateway.channels.twilio.adapter import WHATSAPP_PREFIX, compute_signature, public_url
from gateway.channels.whatsapp.adapter import SIGNATURE_HEADER as META_SIGNATURE_HEADER
from gateway.channels.whatsapp.adapter import signature_header

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_WABA_ID = "102290129340398"


def new_twilio_sid(prefix: str = "SM") -> str:
    return prefix + uuid.uuid4().hex


def new_wamid() -> str:
    return "wamid." + uuid.uuid4().hex.upper()


# --- Twilio -----------------------------------------------------------------------------------

def twilio_inbound_params(from_number: str, to_number: str, text: str, whatsapp: bool = False,
                          media_urls: Sequence[str] = (), profile_name: str | None = None, *,
                          account_sid: str = DEFAULT_ACCOUNT_SID) -> list[tuple[str, str]]:
    """The form parameters of a Twilio inbound-message webhook, with a fresh MessageSid."""
    sid = new_twilio_sid("MM" if media_urls else "SM")
    prefix = WHATSAPP_PREFIX if whatsapp else ""
    params = [("MessageSid", sid), ("SmsMessageSid", sid), ("SmsSid", sid), ("AccountSid", account_sid),
              ("From", prefix + from_number), ("To", prefix + to_number), ("Body", text),
              ("NumMedia", str(len(media_urls))), ("NumSegments", str(count_segments(text).segments))]
    for i, url in enumerate(media_urls):
        params += [(f"MediaUrl{i}", url),
                   (f"MediaContentType{i}", mimetypes.guess_type(url)[0] or "application/octet-stream")]
    if whatsapp:
        if profile_name:
            params.append(("ProfileName", profile_name))
        if from_number.startswith("+"):
            params.append(("WaId", from_number.lstrip("+")))
    params += [("SmsStatus", "received"), ("ApiVersion", "2010-04-01")]
    return params


def twilio_status_params(message_sid: str, status: str, *, to: str, from_: str,
                         error_code: str | None = None, account_sid: str = DEFAULT_ACCOUNT_SID
                         ) -> list[tuple[str, str]]:
    """The form parameters of a Twilio status callback."""
    params = [("MessageSid", message_sid), ("SmsSid", message_sid), ("AccountSid", account_sid),
              ("From", from_), ("To", to), ("MessageStatus", status), ("SmsStatus", status),
              ("ApiVersion", "2010-04-01")]
    if error_code:
        params.append(("ErrorCode", str(error_code)))
    return params


async def post_twilio_form(url: str, params: Iterable[tuple[str, str]], auth_token: str,
                           public_base_url: str | None = None) -> tuple[int, str]:
    """POST `params` form-encoded to `url`, signed like Twilio over the URL Twilio would have
    requested (the public base URL + the path, when one is given)."""
    params = list(params)
    parts = urlsplit(url)
    path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
    signed_url = public_url(public_base_url, parts.scheme, parts.netloc, path_qs)
    headers = {TWILIO_SIGNATURE_HEADER: compute_signature(signed_url, params, auth_token),
               "User-Agent": "TwilioProxy/1.1"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=params, headers=headers) as resp:
            return resp.status, await resp.text()


async def post_twilio_inbound(gateway_url: str, params: Iterable[tuple[str, str]], auth_token: str,
                              public_url: str | None = None) -> tuple[int, str]:
    """POST a simulated inbound message to the gateway's Twilio webhook URL (full URL)."""
    return await post_twilio_form(gateway_url, params, auth_token, public_url)


# --- Meta WhatsApp Cloud API ------------------------------------------------------------------

def _envelope(value: dict[str, Any], waba_id: str = DEFAULT_WABA_ID) -> dict[str, Any]:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}]}


def _metadata(phone_number_id: str, display_phone_number: str) -> dict[str, str]:
    return {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}


def meta_inbound_payload(from_number: str, text: str, phone_number_id: str, *,
                         profile_name: str | None = "Ana", display_phone_number: str = "15550783881",
                         message_id: str | None = None, timestamp: int | None = None,
                         reply_to: str | None = None, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `messages` webhook carrying one customer message: text by default, or any `message`
    sub-object (e.g. {"type": "image", "image": {...}}) merged over the text one."""
    wa_id = from_number.lstrip("+")
    msg: dict[str, Any] = {"from": wa_id, "id": message_id or new_wamid(),
                           "timestamp": str(int(time.time()) if timestamp is None else timestamp),
                           "type": "text", "text": {"body": text}}
    if message:
        msg.pop("text")
        msg.update(message)
    if reply_to:
        msg["context"] = {"from": display_phone_number, "id": reply_to}
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": _metadata(phone_number_id, display_phone_number)}
    if profile_name is not None:
        value["contacts"] = [{"profile": {"name": profile_name}, "wa_id": wa_id}]
    value["messages"] = [msg]
    return _envelope(value)


def meta_status_payload(wamid: str, status: str, recipient: str, phone_number_id: str, *,
                        error_code: int | None = None, error_title: str | None = None,
                        display_phone_number: str = "15550783881",
                        timestamp: int | None = None) -> dict[str, Any]:
    """A `messages` webhook carrying one status of an outbound message."""
    item: dict[str, Any] = {"id": wamid, "status": status,
                            "timestamp": str(int(time.time()) if timestamp is None else timestamp),
                            "recipient_id": recipient.lstrip("+")}
    if status in ("sent", "delivered"):
        item["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if error_code is not None:
        title = error_title or "Message failed"
        item["errors"] = [{"code": error_code, "title": title, "message": title,
                           "error_data": {"details": title},
                           "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
    return _envelope({"messaging_product": "whatsapp",
                      "metadata": _metadata(phone_number_id, display_phone_number), "statuses": [item]})


def meta_body(payload: dict[str, Any]) -> bytes:
    """Compact JSON bytes, as Meta sends them."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def post_meta_webhook(gateway_url: str, payload: dict[str, Any] | bytes, app_secret: str) -> tuple[int, str]:
    """POST a webhook to the gateway's WhatsApp URL, signing exactly the bytes sent."""
    body = payload if isinstance(payload, bytes) else meta_body(payload)
    headers = {"Content-Type": "application/json", META_SIGNATURE_HEADER: signature_header(body, app_secret),
               "User-Agent": "facebookexternalua"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway_url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()


def simulated_mailgun_form(settings: Settings, *, sender: str, recipient: str, subject: str, text: str) -> dict:
    """A signed Mailgun forward() post, as `gateway simulate email` sends it."""
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(email_webhook_key(settings).encode(), (timestamp + token).encode(),
                         hashlib.sha256).hexdigest()
    message_id = f"<{uuid.uuid4().hex}@simulate.local>"    # one per mail, in both places, or mails dedupe
    return {"recipient": recipient, "sender": sender, "from": sender, "subject": subject, "body-plain": text,
            "Message-Id": message_id, "timestamp": timestamp, "token": token,
            "signature": signature,
            # Mailgun's own SPF verdict, as it adds it to mail it received (the sender is "authenticated")
            "message-headers": json.dumps([["X-Mailgun-Spf", "Pass"], ["Message-Id", message_id],
                                           ["Subject", subject]])}
