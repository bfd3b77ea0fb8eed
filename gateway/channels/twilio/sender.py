"""Outbound SMS/MMS/WhatsApp through Twilio's Messages REST API, with the answer classified.

Classification (providers.md 1.5-1.6, courier's policy): 2xx sent; HTTP 429 or code 20429, and
503 with Retry-After, throttled (the sender pauses); other 5xx, timeouts and network errors retry;
21610 opted out; 63016 (WhatsApp window closed) fall back; 21211 (not a valid number) fails and
marks the address undeliverable; any other code is a permanent failure that keeps the code.

A timeout or a connection dropped after the request went out leaves the outcome unknown (Twilio
may have accepted it): such results say so (`extra["outcome_unknown"]`), and before the retry the
outbox asks `lookup()` whether Twilio has the message already.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Collection
from urllib.parse import urlencode

import aiohttp

from gateway.app.log import get_logger
from gateway.app.settings import Settings, parse_content_sids
from gateway.channels.errors import MediaDownloadError
from gateway.channels.http import json_object, retry_after_seconds, transport_failure
from gateway.channels.modes import live_channels, whatsapp_provider
from gateway.channels.render import render_numbered_menu
from gateway.channels.twilio.adapter import WHATSAPP_PREFIX
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult
from gateway.infra.guarded_fetch import GuardedFetcher, HostList

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

THROTTLE_CODES = {"20429"}
OPT_OUT_CODES = {"21610"}
FALLBACK_CODES = {"63016"}
UNDELIVERABLE_CODES = {"21211"}   # "The 'To' number is not a valid phone number"
LOOKUP_PAGE_SIZE = 20
FORM = "application/x-www-form-urlencoded"
LOOKUP_CLOCK_SKEW = timedelta(minutes=2)
STATUS_PATH = "/webhooks/twilio/status"   # where Twilio posts status callbacks (gateway.channels.twilio.routes)


class TwilioSender:
    """ChannelSender for Channel.SMS or Channel.WHATSAPP over Twilio."""

    provider = "twilio"
    media_source = "url"        # the attachment field `download_media` takes: Twilio's MediaUrl

    def __init__(self, session: aiohttp.ClientSession, *, channel: Channel, account_sid: str,
                 auth_token: str, api_base: str = "https://api.twilio.com", from_address: str | None,
                 messaging_service_sid: str | None = None, api_key_sid: str | None = None,
                 timeout: float = 10.0, fetcher: GuardedFetcher | None = None,
                 media_hosts: HostList | None = None, content_sids: dict[str, str] | None = None,
                 status_callback_url: str | None = None):
        if channel not in (Channel.SMS, Channel.WHATSAPP):
            raise ValueError(f"Twilio cannot send on {channel.value}")
        if not from_address and not messaging_service_sid:
            raise ValueError("Twilio needs a from address or a messaging service sid")
        self.channel = channel
        self.status_callback_url = status_callback_url
        self._session = session
        self._url = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        # With an API key the key sid is the username and `auth_token` holds the key secret.
        credentials = base64.b64encode(f"{api_key_sid or account_sid}:{auth_token}".encode()).decode()
        self._auth_header = {"Authorization": f"Basic {credentials}"}
        self._from = from_address
        self._service = messaging_service_sid
        self._content_sids = dict(content_sids or {})   # template name -> Content SID (HX...)
        self.timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._fetcher = fetcher
        self._media_hosts = media_hosts or HostList.of((), api_base)

    def __repr__(self) -> str:  # never show the token
        return f"TwilioSender(channel={self.channel.value}, url={self._url!r})"

    def _address(self, value: str) -> str:
        if self.channel is Channel.WHATSAPP and not value.startswith(WHATSAPP_PREFIX):
            return WHATSAPP_PREFIX + value
        return value

    def build_form(self, msg: OutgoingMessage) -> list[tuple[str, str]]:
        """The form Twilio's create-message call receives for `msg` (keys per twilio-python)."""
        form = [("To", self._address(msg.to))]
        # A Messaging Service picks the SMS sender from its pool (and handles opt-outs);
        # WhatsApp needs the exact whatsapp: sender when one is configured.
        sender = msg.sender or (None if self._service and self.channel is Channel.SMS else self._from)
        if sender and sender.startswith("MG"):   # an inbox that is a Messaging Service
            form.append(("MessagingServiceSid", sender))
        elif sender:
            form.append(("From", self._address(sender)))
        else:
            form.append(("MessagingServiceSid", self._service or ""))
        if msg.template is not None:
            variables = dict(msg.template.variables) or {
                str(i): value for i, value in enumerate(msg.template.parameters, 1)}
            # Twilio knows a WhatsApp template by its Content SID: a journey's template name maps to one
            # (GATEWAY_TWILIO_CONTENT_SIDS); an HX... name is already one.
            form.append(("ContentSid", self._content_sids.get(msg.template.name, msg.template.name)))
            if variables:
                form.append(("ContentVariables", json.dumps(variables, ensure_ascii=False)))
        else:
            body = render_numbered_menu(msg.text, msg.buttons) if msg.buttons else msg.text
            if body:
                form.append(("Body", body))
            form.extend(("MediaUrl", a.url) for a in msg.attachments if a.url)
        if self.status_callback_url:
            form.append(("StatusCallback", self.status_callback_url))
        return form

    async def send(self, msg: OutgoingMessage) -> SendResult:
        form = self.build_form(msg)
        try:
            # the form encoded here: aiohttp's FormData costs several times more per send
            async with self._session.post(self._url, data=urlencode(form).encode(), timeout=self._timeout,
                                          headers={**self._auth_header, "Accept": "application/json",
                                                   "Content-Type": FORM}) as resp:
                body = await json_object(resp)
                result = classify(resp.status, body, resp.headers.get("Retry-After"))
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            return transport_failure(exc, "Twilio")
        sent = dict(form).get("Body")
        if result.outcome is SendOutcome.SENT and sent is not None and sent != msg.text:
            result = dataclasses.replace(result, sent_text=sent)   # e.g. the buttons as a numbered menu
        return result

    async def lookup(self, msg: OutgoingMessage, since: datetime,
                     exclude: Collection[str] = ()) -> SendResult | None:
        """Did Twilio accept `msg` in an earlier attempt (started at `since`)? Its SENT result if so.

        Twilio has no idempotency key for Messages, so the match is on recipient, sender and body
        among the latest messages (Messages list, newest first: UNVERIFIED beyond the docs' example)
        created since the attempt began, the oldest first, skipping sids in `exclude` (those already
        recorded for other messages: a bot may well say the same thing twice). A failed look-up is a
        RETRY whose outcome stays unknown.
        """
        form = dict(self.build_form(msg))
        params = {"To": form["To"], "PageSize": str(LOOKUP_PAGE_SIZE)}
        if form.get("From"):
            params["From"] = form["From"]
        try:
            async with self._session.get(self._url, params=params, timeout=self._timeout,
                                         headers={**self._auth_header, "Accept": "application/json"}) as resp:
                body = await json_object(resp)
                if resp.status != 200:
                    return SendResult(SendOutcome.RETRY, error_code=f"lookup_http_{resp.status}",
                                      error_message="Twilio message look-up failed",
                                      extra={"outcome_unknown": True})
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            return SendResult(SendOutcome.RETRY, error_code="lookup_failed", error_message=type(exc).__name__,
                              extra={"outcome_unknown": True})
        items = body.get("messages") if isinstance(body.get("messages"), list) else []
        for item in reversed(items):
            if not isinstance(item, dict) or item.get("body", "") != form.get("Body", "") or item.get("sid") in exclude:
                continue
            try:
                created = parsedate_to_datetime(item.get("date_created") or "")
            except (TypeError, ValueError):
                continue
            if created >= since - LOOKUP_CLOCK_SKEW and item.get("sid"):
                return classify(201, item)
        return None

    async def download_media(self, url: str) -> tuple[bytes, str | None]:
        """Fetch an inbound MediaUrlN through the guarded fetcher: only from Twilio's media hosts,
        with Basic auth only to them (Twilio redirects to its CDN, which gets no credentials)."""
        if self._fetcher is None:
            raise MediaDownloadError("no media fetcher configured")
        fetched = await self._fetcher.fetch(url, hosts=self._media_hosts, headers=self._auth_header)
        return fetched.data, fetched.content_type


def classify(http_status: int, body: dict[str, Any], retry_after: str | None = None) -> SendResult:
    """Map Twilio's answer to a SendResult."""
    if 200 <= http_status < 300:
        sid = body.get("sid")
        if not sid:
            return SendResult(SendOutcome.FAILED, error_code="invalid_response",
                              error_message="2xx answer without a message sid")
        segments = body.get("num_segments")
        return SendResult(SendOutcome.SENT, provider_message_id=sid, status=body.get("status"),
                          segments=int(segments) if str(segments or "").isdigit() else None)
    code = str(body["code"]) if body.get("code") is not None else None
    message = body.get("message") or body.get("title") or f"HTTP {http_status}"
    if http_status == 429 or code in THROTTLE_CODES or (http_status == 503 and retry_after):
        return SendResult(SendOutcome.THROTTLED, error_code=code or str(http_status), error_message=message,
                          retry_after=retry_after_seconds(retry_after))
    if code in OPT_OUT_CODES:
        return SendResult(SendOutcome.OPTED_OUT, error_code=code, error_message=message)
    if code in FALLBACK_CODES:
        return SendResult(SendOutcome.FALLBACK, error_code=code, error_message=message)
    if http_status >= 500:
        return SendResult(SendOutcome.RETRY, error_code=code or f"http_{http_status}", error_message=message)
    log.info("twilio send failed", http_status=http_status, error_code=code)
    if code in UNDELIVERABLE_CODES:
        return SendResult(SendOutcome.FAILED, error_code=code, error_message=message,
                          extra={"address_undeliverable": True})
    return SendResult(SendOutcome.FAILED, error_code=code or f"http_{http_status}", error_message=message)


def twilio_sender(s: Settings, http: aiohttp.ClientSession, fetcher: GuardedFetcher | None, channel: Channel,
                  **overrides) -> TwilioSender:
    """The Twilio sender of `channel` from settings (`overrides` replace single arguments, e.g. an
    inbox's own number)."""
    from_address = s.twilio_from_number if channel is Channel.SMS else s.twilio_whatsapp_from
    args = dict(account_sid=s.twilio_account_sid, auth_token=s.twilio_auth_token, from_address=from_address,
                content_sids=parse_content_sids(s.twilio_content_sids), timeout=s.twilio_timeout,
                api_base=s.twilio_api_base, messaging_service_sid=s.twilio_messaging_service_sid,
                fetcher=fetcher, media_hosts=HostList.of(s.twilio_media_hosts, s.twilio_api_base),
                status_callback_url=f"{s.base_url}{STATUS_PATH}")
    return TwilioSender(http, channel=channel, **{**args, **overrides})


def live_senders(rt: Runtime) -> dict[Channel, TwilioSender]:
    """SMS where Twilio's SMS settings are set; WhatsApp when Twilio carries it (gateway.channels.modes)."""
    s, live = rt.settings, live_channels(rt.settings)
    senders = {}
    if Channel.SMS in live:
        senders[Channel.SMS] = twilio_sender(s, rt.http, rt.fetcher, Channel.SMS)
    if whatsapp_provider(s) == "twilio":
        senders[Channel.WHATSAPP] = twilio_sender(s, rt.http, rt.fetcher, Channel.WHATSAPP)
    return senders


def inbox_sender(s: Settings, http: aiohttp.ClientSession, fetcher: GuardedFetcher | None, channel: Channel,
                 address: str | None, creds: dict) -> TwilioSender | None:
    """The sender of an inbox on Twilio (its own number or Messaging Service, its own account when it
    has credentials); None without credentials of its own while Twilio's settings are not set."""
    if not creds and not s.twilio_enabled:
        return None
    service = address if address and address.startswith("MG") else None
    return twilio_sender(s, http, fetcher, channel,
                         account_sid=creds.get("account_sid") or s.twilio_account_sid,
                         auth_token=creds.get("auth_token") or s.twilio_auth_token,
                         api_key_sid=creds.get("api_key_sid"),
                         from_address=None if service else address,
                         messaging_service_sid=service or s.twilio_messaging_service_sid)


# inboxes whose provider is "twilio" send through `inbox_sender` (gateway.inboxes.senders)
INBOX_SENDERS = {"twilio": inbox_sender}

