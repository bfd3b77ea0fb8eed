"""Outbound WhatsApp through the Meta Cloud API (Graph `/{phone-number-id}/messages`).

Meta reports what went wrong in `error.code`, not in the HTTP status (a rate limit can come back
as 400), so classification reads the code first and falls back to the status for 5xx.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.channels.errors import MediaDownloadError
from gateway.channels.http import json_object, retry_after_seconds, transport_failure
from gateway.channels.modes import whatsapp_provider
from gateway.channels.render import render_numbered_menu
from gateway.domain.types import Attachment, Channel, OutgoingMessage, SendOutcome, SendResult
from gateway.infra.guarded_fetch import GuardedFetcher, HostList

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

FALLBACK_CODES = {131047, 131026}   # 24 h window closed (send a template) / not a WhatsApp user
THROTTLE_CODES = {130429, 131056, 4, 80007, 133016}
# Meta documents 131050 as "this recipient has chosen to stop receiving marketing messages on WhatsApp
# from your business": it ends marketing only, so replies and service messages still go.
MARKETING_OPT_OUT_CODES = {131050}
RETRY_CODES = {131053}              # media upload error
BUTTON_TITLE_MAX = 20
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
LIST_BUTTON_MAX = 20
CAPTION_TYPES = ("image", "video", "document")
MEDIA_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _media_kind(att: Attachment) -> str:
    major = (att.content_type or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "document"


def _interactive(msg: OutgoingMessage) -> dict[str, Any]:
    body = {"text": msg.text or msg.button_label or "Choose"}
    if len(msg.buttons) <= 3:
        buttons = [{"type": "reply", "reply": {"id": b.id, "title": b.title[:BUTTON_TITLE_MAX]}}
                   for b in msg.buttons]
        return {"type": "button", "body": body, "action": {"buttons": buttons}}
    rows = []
    for b in msg.buttons:
        row = {"id": b.id, "title": b.title[:ROW_TITLE_MAX]}
        if b.description:
            row["description"] = b.description[:ROW_DESCRIPTION_MAX]
        rows.append(row)
    label = (msg.button_label or "Choose")[:LIST_BUTTON_MAX]
    return {"type": "list", "body": body, "action": {"button": label, "sections": [{"rows": rows}]}}


def _template(msg: OutgoingMessage) -> dict[str, Any]:
    t = msg.template
    assert t is not None
    template: dict[str, Any] = {"name": t.name, "language": {"code": t.language, "policy": "deterministic"}}
    if t.parameters:
        template["components"] = [{"type": "body",
                                   "parameters": [{"type": "text", "text": p} for p in t.parameters]}]
    return template


def build_payloads(msg: OutgoingMessage) -> list[dict[str, Any]]:
    """The JSON bodies (one per Graph call) that deliver `msg`, in order.

    WhatsApp carries one media item per message, so each attachment is its own call; the text
    rides as the first caption when the type allows it. More than 10 options cannot be a list,
    so they become a numbered menu in a text message.
    """
    to = msg.to.lstrip("+")
    parts: list[tuple[str, dict[str, Any]]] = []
    if msg.template is not None:
        parts.append(("template", _template(msg)))
    else:
        text_used = False
        for i, att in enumerate(msg.attachments):
            if not (att.url or att.provider_media_id):
                continue
            kind = _media_kind(att)
            media: dict[str, Any] = {"id": att.provider_media_id} if att.provider_media_id else {"link": att.url}
            if kind in CAPTION_TYPES:
                caption = att.caption or (msg.text if not parts and not msg.buttons else None)
                if caption:
                    media["caption"] = caption
                    text_used = text_used or caption == msg.text
            if kind == "document" and att.filename:
                media["filename"] = att.filename
            parts.append((kind, media))
        if msg.buttons and len(msg.buttons) <= 10:
            parts.append(("interactive", _interactive(msg)))
        elif msg.buttons:
            parts.append(("text", {"body": render_numbered_menu(msg.text, msg.buttons), "preview_url": False}))
        elif msg.text and not text_used:
            parts.append(("text", {"body": msg.text, "preview_url": False}))
    payloads = []
    for kind, content in parts:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                   "type": kind, kind: content}
        if msg.in_reply_to and not payloads:
            payload["context"] = {"message_id": msg.in_reply_to}
        payloads.append(payload)
    return payloads


class WhatsAppCloudSender:
    """ChannelSender for Channel.WHATSAPP over the Meta Cloud API."""

    channel = Channel.WHATSAPP
    provider = "whatsapp_cloud"
    media_source = "provider_media_id"   # the attachment field `download_media` takes: Meta's media id

    def __init__(self, session: aiohttp.ClientSession, *, access_token: str, phone_number_id: str,
                 api_base: str = "https://graph.facebook.com/v21.0", timeout: float = 10.0,
                 fetcher: GuardedFetcher | None = None, media_hosts: HostList | None = None):
        self._session = session
        self._base = api_base.rstrip("/")
        self._messages_url = f"{self._base}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self.timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._fetcher = fetcher
        self._media_hosts = media_hosts or HostList.of((), api_base)

    def __repr__(self) -> str:  # never show the token
        return f"WhatsAppCloudSender(url={self._messages_url!r})"

    async def send(self, msg: OutgoingMessage) -> SendResult:
        """Send every part of `msg`; the first part's wamid identifies the message.

        When a later part fails after an earlier one went out, the result stays SENT (retrying
        would duplicate what was delivered) and `extra["failed_part"]` records the failure.
        """
        payloads = build_payloads(msg)
        if not payloads:
            return SendResult(SendOutcome.FAILED, error_code="empty_message", error_message="nothing to send")
        first: SendResult | None = None
        ids: list[str] = []
        url = self.messages_url(msg)
        for payload in payloads:
            result = await self._post(url, payload)
            if result.outcome is not SendOutcome.SENT:
                if first is None:
                    return result
                return SendResult(SendOutcome.SENT, provider_message_id=first.provider_message_id,
                                  status=first.status, extra={"part_ids": ids, "failed_part": {
                                      "outcome": result.outcome.value, "error_code": result.error_code,
                                      "error_message": result.error_message}})
            first = first or result
            ids.append(result.provider_message_id or "")
        assert first is not None
        texts = [p["text"]["body"] for p in payloads if p["type"] == "text"]
        sent_text = texts[0] if texts and texts[0] != msg.text else None   # > 10 options: a numbered menu
        if len(ids) == 1:
            return dataclasses.replace(first, sent_text=sent_text)
        return SendResult(SendOutcome.SENT, provider_message_id=first.provider_message_id,
                          status=first.status, extra={"part_ids": ids}, sent_text=sent_text)

    def messages_url(self, msg: OutgoingMessage) -> str:
        """Graph's messages endpoint of the phone number id the message leaves from (its inbox's,
        else the one in settings). Inbox addresses are digits (gateway.inboxes.model)."""
        return f"{self._base}/{msg.sender}/messages" if msg.sender else self._messages_url

    async def _post(self, url: str, payload: dict[str, Any]) -> SendResult:
        try:
            async with self._session.post(url, json=payload, headers=self._headers,
                                          timeout=self._timeout) as resp:
                body = await json_object(resp)
                return classify(resp.status, body, resp.headers.get("Retry-After"))
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            return transport_failure(exc, "Graph API")

    async def mark_read(self, wamid: str) -> bool:
        """Show the customer's message as read (blue ticks); False when Meta refused or was unreachable."""
        payload = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        try:
            async with self._session.post(self._messages_url, json=payload, headers=self._headers,
                                          timeout=self._timeout) as resp:
                return resp.status == 200 and (await json_object(resp)).get("success") is True
        except (asyncio.TimeoutError, aiohttp.ClientError):
            return False

    async def download_media(self, media_id: str) -> tuple[bytes, str | None]:
        """(bytes, content type) of an inbound media id: GET the id for a URL, then GET the URL,
        both through the guarded fetcher and only to Meta's media hosts (they get the token)."""
        if self._fetcher is None:
            raise MediaDownloadError("no media fetcher configured")
        if not MEDIA_ID.fullmatch(media_id or ""):
            raise MediaDownloadError("not a media id")
        meta_answer = await self._fetcher.fetch(f"{self._base}/{media_id}", hosts=self._media_hosts,
                                                headers=self._headers)
        try:
            meta = json.loads(meta_answer.data)
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or not isinstance(meta.get("url"), str):
            raise MediaDownloadError("media lookup answered without a URL")
        fetched = await self._fetcher.fetch(meta["url"], hosts=self._media_hosts, headers=self._headers)
        mime = meta.get("mime_type")
        return fetched.data, mime if isinstance(mime, str) and mime else fetched.content_type


def classify(http_status: int, body: dict[str, Any], retry_after: str | None = None) -> SendResult:
    """Map a Graph API answer to a SendResult (by error.code first, then HTTP status)."""
    if 200 <= http_status < 300:
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        wamid = messages[0].get("id") if messages and isinstance(messages[0], dict) else None
        if not wamid:
            return SendResult(SendOutcome.FAILED, error_code="invalid_response",
                              error_message="2xx answer without a message id")
        return SendResult(SendOutcome.SENT, provider_message_id=wamid,
                          status=messages[0].get("message_status") or "accepted")
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = error.get("code")
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    message = str(error.get("message") or f"HTTP {http_status}")
    if details and str(details) not in message:
        message = f"{message} - {details}"
    error_code = str(code) if code is not None else f"http_{http_status}"
    if code in FALLBACK_CODES:
        outcome = SendOutcome.FALLBACK
    elif (code in THROTTLE_CODES or (code is None and http_status == 429)
          or (http_status == 503 and retry_after_seconds(retry_after))):
        return SendResult(SendOutcome.THROTTLED, error_code=error_code, error_message=message,
                          retry_after=retry_after_seconds(retry_after))
    elif code in MARKETING_OPT_OUT_CODES:
        return SendResult(SendOutcome.OPTED_OUT, error_code=error_code, error_message=message,
                          extra={"opted_out_of": "marketing"})
    elif code in RETRY_CODES or http_status >= 500:
        outcome = SendOutcome.RETRY
    else:
        outcome = SendOutcome.FAILED
        log.info("whatsapp send failed", http_status=http_status, error_code=error_code)
    return SendResult(outcome, error_code=error_code, error_message=message)


def meta_sender(s: Settings, http: aiohttp.ClientSession, fetcher: GuardedFetcher | None,
                **overrides) -> WhatsAppCloudSender:
    """The WhatsApp Cloud API sender from settings (`overrides` replace single arguments)."""
    args = dict(access_token=s.whatsapp_access_token, phone_number_id=s.whatsapp_phone_number_id,
                api_base=s.whatsapp_api_base, fetcher=fetcher, timeout=s.whatsapp_timeout,
                media_hosts=HostList.of(s.whatsapp_media_hosts, s.whatsapp_api_base))
    return WhatsAppCloudSender(http, **{**args, **overrides})


def live_senders(rt: Runtime) -> dict[Channel, WhatsAppCloudSender]:
    """WhatsApp through Meta when its settings are set (preferred over Twilio, gateway.channels.modes)."""
    if whatsapp_provider(rt.settings) != "cloud":
        return {}
    return {Channel.WHATSAPP: meta_sender(rt.settings, rt.http, rt.fetcher)}


def inbox_sender(s: Settings, http: aiohttp.ClientSession, fetcher: GuardedFetcher | None, channel: Channel,
                 address: str | None, creds: dict) -> WhatsAppCloudSender | None:
    """The sender of a WhatsApp number on Meta's Cloud API (its own access token when it has one);
    None without credentials of its own while Meta's settings are not set."""
    if not creds and not s.whatsapp_cloud_enabled:
        return None
    return meta_sender(s, http, fetcher, phone_number_id=address or s.whatsapp_phone_number_id,
                       access_token=creds.get("access_token") or s.whatsapp_access_token)


# inboxes whose provider is "meta" send through `inbox_sender` (gateway.inboxes.senders)
INBOX_SENDERS = {"meta": inbox_sender}

