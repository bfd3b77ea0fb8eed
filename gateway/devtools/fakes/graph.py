"""A fake Meta Graph API (WhatsApp Cloud API) on localhost: send, mark read, media, webhooks.

Checks the Bearer token, records JSON bodies, answers the success shape with wamids and scripted
errors in Graph's error shape (the HTTP status varies by code as Meta's does; senders must read
`error.code`). `api_base` is what a WhatsAppCloudSender is configured with.

    async with FakeGraph() as fake:
        sender = WhatsAppCloudSender(session, access_token=fake.access_token,
                                     phone_number_id=fake.phone_number_id, api_base=fake.api_base)
        fake.fail_next(1, code=131047)

It misbehaves on demand like the fake Twilio (`chaos(Misbehaviour(...))`, `latency`, `hang_for`):
throttles answer 130429 (HTTP 400, as Meta does), server errors 131000 (HTTP 500), unavailable
HTTP 503 with Retry-After.
"""
from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.devtools.fakes import FakeServer, Misbehaving, drop_connection
from gateway.devtools.simulate_providers import meta_inbound_payload as inbound_text_payload  # noqa: F401 (re-export)
from gateway.devtools.simulate_providers import meta_status_payload as status_payload  # noqa: F401 (re-export)
from gateway.devtools.simulate_providers import new_wamid, post_meta_webhook

VERSION = "v21.0"

# (HTTP status, title) Meta uses for common codes; anything else answers 400.
ERRORS: dict[int, tuple[int, str]] = {
    4: (400, "Application request limit reached"),
    100: (400, "Invalid parameter"),
    190: (401, "Invalid OAuth access token"),
    10: (403, "Permission denied"),
    80007: (400, "Rate limit issues"),
    130429: (400, "Rate limit hit"),
    131000: (500, "Something went wrong"),
    131026: (400, "Message undeliverable"),
    131047: (400, "Re-engagement message"),
    131048: (400, "Spam rate limit hit"),
    131050: (400, "User has stopped marketing messages"),
    131053: (400, "Media upload error"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Template param count mismatch"),
    132001: (404, "Template does not exist"),
    133016: (400, "Account register deregister rate limit exceeded"),
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    json: Any
    headers: dict[str, str]


@dataclass
class _Failure:
    code: int
    http_status: int
    message: str
    details: str
    retry_after: float | None = None


@dataclass
class _Media:
    body: bytes
    mime_type: str


def error_body(code: int, message: str, details: str) -> dict[str, Any]:
    return {"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": details},
                      "fbtrace_id": "A" + uuid.uuid4().hex[:22]}}


class FakeGraph(FakeServer, Misbehaving):
    def __init__(self, access_token: str = "fake-graph-token", phone_number_id: str = "106540352242922"):
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.phone_number_ids = {phone_number_id}     # add more: one business account, several numbers
        self.sent: list[dict[str, Any]] = []          # accepted message bodies, wamid added as "_id"
        self.read_marks: list[str] = []
        self._init_misbehaving()

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/{VERSION}"

    # --- scripting ----------------------------------------------------------------------------
    def _failure(self, code: int, http_status: int | None, message: str | None, details: str | None,
                 retry_after: float | None = None) -> _Failure:
        default_status, title = ERRORS.get(code, (400, "Error"))
        return _Failure(code, http_status or default_status, message or title, details or message or title,
                        retry_after)

    def fail_next(self, n: int = 1, *, code: int = 131047, http_status: int | None = None,
                  message: str | None = None, details: str | None = None,
                  retry_after: float | None = None, after: int = 0) -> None:
        """Answer `n` message sends with this Graph error, once `after` more have succeeded."""
        self._failures.extend([None] * after)
        self._failures.extend(self._failure(code, http_status, message, details, retry_after) for _ in range(n))

    def delay_next(self, n: int, seconds: float) -> None:
        self._delays.extend([seconds] * n)

    def fail_for(self, to: str, *, code: int = 131026, http_status: int | None = None) -> None:
        """Always answer sends to `to` (digits, as in the body's "to") with this error."""
        self._recipient_rules[to.lstrip("+")] = self._failure(code, http_status, None, None)

    def add_media(self, body: bytes, mime_type: str, media_id: str | None = None) -> str:
        """Make `body` downloadable as media id (returned)."""
        media_id = media_id or str(uuid.uuid4().int)[:16]
        self._media[media_id] = _Media(body, mime_type)
        return media_id

    # --- lifecycle ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/media-download/{media_id}", self._media_bytes)
        app.router.add_post(r"/{version:v\d+\.\d+}/{phone_id}/messages", self._messages)
        app.router.add_get(r"/{version:v\d+\.\d+}/{media_id}", self._media_info)
        return app

    # --- handlers -----------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.access_token}"

    @staticmethod
    def _error(failure: _Failure) -> web.Response:
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else None
        return web.json_response(error_body(failure.code, failure.message, failure.details),
                                 status=failure.http_status, headers=headers)

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.method, request.path, body, dict(request.headers)))
        is_send = isinstance(body, dict) and body.get("status") != "read"
        delay = self._delays.popleft() if self._delays else 0.0
        fate = await self._fate(str(body.get("to")), delay) if is_send else None
        if not is_send and delay:
            await asyncio.sleep(delay)
        if fate == "drop":
            return await drop_connection(request)
        if not self._authorized(request):
            return self._error(self._failure(190, None, None, "Malformed access token"))
        if request.match_info["phone_id"] not in self.phone_number_ids:
            return self._error(self._failure(100, None, "Unsupported post request", "Unknown phone number id"))
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return self._error(self._failure(100, None, "Invalid parameter", "messaging_product is required"))
        if body.get("status") == "read":
            self.read_marks.append(body.get("message_id", ""))
            return web.json_response({"success": True})
        failure = self._failures.popleft() if self._failures else None
        if fate in ("throttle", "server_error", "unavailable"):
            retry_after = self.misbehaviour.retry_after
            failure = {"throttle": self._failure(130429, None, None, None, retry_after),
                       "server_error": self._failure(131000, None, None, None),
                       "unavailable": self._failure(131000, 503, "Service temporarily unavailable", None,
                                                    retry_after)}[fate]
        failure = failure or self._recipient_rules.get(str(body.get("to")))
        if failure is None and body.get("type") not in body:
            failure = self._failure(100, None, "Invalid parameter", f"{body.get('type')} object is required")
        if failure is not None:
            return self._error(failure)
        wamid = new_wamid()
        self.sent.append({**body, "_id": wamid, "_phone_number_id": request.match_info["phone_id"]})
        if fate == "drop_after_accept":
            return await drop_connection(request)
        to = str(body.get("to"))
        return web.json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                  "messages": [{"id": wamid, "message_status": "accepted"}]})

    async def _media_info(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest(request.method, request.path, None, dict(request.headers)))
        if not self._authorized(request):
            return self._error(self._failure(190, None, None, "Malformed access token"))
        media_id = request.match_info["media_id"]
        media = self._media.get(media_id)
        if media is None:
            return self._error(self._failure(100, 400, "Invalid parameter", "Unknown media id"))
        return web.json_response({
            "messaging_product": "whatsapp", "url": f"{self.base_url}/media-download/{media_id}",
            "mime_type": media.mime_type, "sha256": hashlib.sha256(media.body).hexdigest(),
            "file_size": len(media.body), "id": media_id})

    async def _media_bytes(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest(request.method, request.path, None, dict(request.headers)))
        if not self._authorized(request):
            return web.Response(status=401)
        media = self._media.get(request.match_info["media_id"])
        if media is None:
            return web.Response(status=404)
        return web.Response(body=media.body, content_type=media.mime_type)

    # --- webhooks to the gateway --------------------------------------------------------------
    @staticmethod
    async def send_webhook(url: str, payload: dict[str, Any] | bytes, app_secret: str) -> tuple[int, str]:
        """POST a webhook signed with X-Hub-Signature-256 over the exact bytes sent."""
        return await post_meta_webhook(url, payload, app_secret)
