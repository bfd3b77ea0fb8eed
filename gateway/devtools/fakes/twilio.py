"""A fake Twilio REST API on localhost: Messages.json create, media, signed status callbacks.

Speaks the real wire format (Basic auth, form body, Message resource JSON, Twilio error JSON)
and records every request, so tests and `gateway bench` exercise the real sender over HTTP.

    async with FakeTwilio() as fake:
        sender = TwilioSender(session, account_sid=fake.account_sid, auth_token=fake.auth_token,
                              api_base=fake.base_url, ...)
        fake.fail_next(1, http_status=400, code=21610, message="Attempt to send to unsubscribed recipient")

It misbehaves on demand, as a provider does on a bad day: `chaos(Misbehaviour(...))` draws each
create call's fate from a mix (429 with Retry-After, 500, 503, hangs, connections dropped before
or after the message was accepted, slow answers), `latency` slows every answer, `hang_for(to)`
never answers for one recipient, and `early_callbacks` posts the signed status callback before
the create call's answer leaves (as Twilio sometimes does).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp
from aiohttp import web

from gateway.channels.sms_segments import count_segments
from gateway.devtools.fakes import FakeServer, Misbehaving, Misbehaviour, drop_connection
from gateway.devtools.simulate_providers import post_twilio_form, twilio_status_params


@dataclass
class RecordedRequest:
    method: str
    path: str
    form: list[tuple[str, str]]
    headers: dict[str, str]
    at: float = field(default_factory=time.time)   # wall-clock arrival
    status: int | None = None                      # the HTTP status answered (None: no answer)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.form if k == key]

    def value(self, key: str) -> str | None:
        found = self.values(key)
        return found[0] if found else None


@dataclass
class _Failure:
    http_status: int
    code: int | None
    message: str
    retry_after: float | None = None


@dataclass
class _Media:
    body: bytes
    content_type: str


def error_body(http_status: int, code: int | None, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": http_status}


class FakeTwilio(FakeServer, Misbehaving):
    def __init__(self, account_sid: str = "AC" + "1" * 32, auth_token: str = "fake-twilio-token", *,
                 success_status: int = 201):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.accounts = {account_sid: auth_token}   # add subaccounts: account sid -> auth token
        self.success_status = success_status   # 201 vs 200 is UNVERIFIED; senders accept any 2xx
        self.messages: dict[str, dict[str, Any]] = {}
        self._init_misbehaving()
        self.early_callbacks: str | None = None   # status to call back with before answering
        self.callback_public_base_url: str | None = None
        self.callbacks_failed: list[str] = []     # sids whose early callback the gateway did not take
        self.callbacks_sent: list[tuple[str, str, int | None]] = []   # (sid, status, our answer) of early callbacks
        self._callback_tasks: set[asyncio.Task] = set()

    # --- scripting ----------------------------------------------------------------------------
    def fail_next(self, n: int = 1, *, http_status: int = 400, code: int | None = 21211,
                  message: str = "The 'To' number is not a valid phone number.",
                  retry_after: float | None = None, after: int = 0) -> None:
        """Answer `n` create calls with this Twilio error, once `after` more have succeeded."""
        self._failures.extend([None] * after)
        self._failures.extend(_Failure(http_status, code, message, retry_after) for _ in range(n))

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next `n` create calls for `seconds` before answering (timeouts)."""
        self._delays.extend([seconds] * n)

    def fail_for(self, to: str, *, http_status: int = 400, code: int = 21610,
                 message: str = "Attempt to send to unsubscribed recipient") -> None:
        """Always answer sends to `to` (as given in the To field) with this error."""
        self._recipient_rules[to] = _Failure(http_status, code, message)

    def accepted(self, to: str | None = None) -> list[dict[str, Any]]:
        """Messages this fake accepted (in order), optionally only those to `to`."""
        return [m for m in self.messages.values() if to is None or m["to"] == to]

    def add_media(self, name: str, body: bytes, content_type: str) -> str:
        """Serve `body` at /media/<name> behind Basic auth; returns its URL."""
        self._media[name] = _Media(body, content_type)
        return f"{self.base_url}/media/{name}"

    # --- lifecycle ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages.json", self._list_messages)
        app.router.add_get("/media/{name}", self._get_media)
        return app

    # --- handlers -----------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == request.match_info.get("account", user) and self.accounts.get(user) == password

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        form = [(k, v) for k, v in (await request.post()).items() if isinstance(v, str)]
        recorded = RecordedRequest(request.method, request.path, form, dict(request.headers))
        self.requests.append(recorded)
        fields = dict(form)
        fate = await self._fate(fields.get("To", ""), self._delays.popleft() if self._delays else 0.0)
        if fate == "drop":
            return await drop_connection(request)
        if not self._authorized(request):
            return web.json_response(error_body(401, 20003, "Authenticate"), status=401)
        failure = self._failures.popleft() if self._failures else None
        if fate in ("throttle", "server_error", "unavailable"):
            m = self.misbehaviour
            failure = {"throttle": _Failure(429, 20429, "Too Many Requests", m.retry_after),
                       "server_error": _Failure(500, 20500, "Internal Server Error"),
                       "unavailable": _Failure(503, 20503, "Service Unavailable", m.retry_after)}[fate]
        failure = failure or self._recipient_rules.get(fields.get("To", ""))
        if failure is None:
            failure = _validate(fields)
        if failure is not None:
            headers = {"Retry-After": _seconds(failure.retry_after)} if failure.retry_after is not None else None
            recorded.status = failure.http_status
            return web.json_response(error_body(failure.http_status, failure.code, failure.message),
                                     status=failure.http_status, headers=headers)
        resource = self._resource(request.match_info["account"], form)
        self.messages[resource["sid"]] = resource
        self._on_accept(resource)
        if self.early_callbacks and fields.get("StatusCallback"):
            # Twilio's callbacks do not depend on the create call's connection: when the client gives
            # up waiting (its timeout), this handler is cancelled but the callback still goes out.
            task = asyncio.create_task(self._early_callback(fields["StatusCallback"], resource["sid"]))
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
            await asyncio.shield(task)
        if fate == "drop_after_accept":
            return await drop_connection(request)
        recorded.status = self.success_status
        return web.json_response(resource, status=self.success_status)

    async def _early_callback(self, url: str, sid: str) -> None:
        try:
            status, _ = await self.send_status_callback(url, sid, self.early_callbacks,
                                                        public_base_url=self.callback_public_base_url)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            status = None
        self.callbacks_sent.append((sid, self.early_callbacks, status))
        if status != 200:
            self.callbacks_failed.append(sid)

    def _on_accept(self, resource: dict[str, Any]) -> None:
        """Called for every message accepted (subclasses keep their own records)."""

    async def _list_messages(self, request: web.Request) -> web.Response:
        """Messages list, newest first, filtered by To and From like Twilio's (PageSize honoured)."""
        if not self._authorized(request):
            return web.json_response(error_body(401, 20003, "Authenticate"), status=401)
        to, from_ = request.query.get("To"), request.query.get("From")
        size = min(int(request.query.get("PageSize", "50") or 50), 1000)
        found = [m for m in reversed(list(self.messages.values()))
                 if (to is None or m["to"] == to) and (from_ is None or m["from"] == from_)][:size]
        return web.json_response({"messages": found, "page": 0, "page_size": size, "next_page_uri": None,
                                  "uri": request.path_qs})

    def _resource(self, account: str, form: list[tuple[str, str]]) -> dict[str, Any]:
        fields = dict(form)
        media = [v for k, v in form if k == "MediaUrl"]
        sid = ("MM" if media else "SM") + uuid.uuid4().hex
        now = formatdate(usegmt=True)
        body = fields.get("Body", "")
        service = fields.get("MessagingServiceSid")
        return {
            "sid": sid, "account_sid": account, "messaging_service_sid": service,
            "from": fields.get("From"), "to": fields["To"], "body": body,
            "status": "accepted" if service else "queued", "direction": "outbound-api",
            "num_segments": "0" if service and not fields.get("From") else str(count_segments(body).segments),
            "num_media": str(len(media)), "error_code": None, "error_message": None,
            "price": None, "price_unit": "USD", "date_created": now, "date_sent": None, "date_updated": now,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
        }

    async def _get_media(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest(request.method, request.path, [], dict(request.headers)))
        if not self._authorized(request):
            return web.json_response(error_body(401, 20003, "Authenticate"), status=401)
        media = self._media.get(request.match_info["name"])
        if media is None:
            return web.json_response(error_body(404, 20404, "The requested resource was not found"), status=404)
        return web.Response(body=media.body, content_type=media.content_type)

    # --- callbacks to the gateway -------------------------------------------------------------
    async def send_status_callback(self, callback_url: str, message_sid: str, status: str,
                                   error_code: str | int | None = None, auth_token: str | None = None, *,
                                   public_base_url: str | None = None) -> tuple[int, str]:
        """POST a signed status callback for a message this fake accepted (or any sid)."""
        sent = self.messages.get(message_sid, {})
        params = twilio_status_params(message_sid, status, to=sent.get("to") or "+15550000000",
                                      from_=sent.get("from") or "+15550000001",
                                      error_code=str(error_code) if error_code is not None else None,
                                      account_sid=self.account_sid)
        return await post_twilio_form(callback_url, params, auth_token or self.auth_token, public_base_url)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _validate(fields: dict[str, str]) -> _Failure | None:
    """The checks real Twilio makes before accepting a create call."""
    if not fields.get("To"):
        return _Failure(400, 21604, "A 'To' phone number is required.")
    if not fields.get("From") and not fields.get("MessagingServiceSid"):
        return _Failure(400, 21603, "A 'From' phone number is required.")
    if not (fields.get("Body") or fields.get("MediaUrl") or fields.get("ContentSid")):
        return _Failure(400, 21619, "A text message body or media urls must be specified.")
    if len(fields.get("Body", "")) > 1600:
        return _Failure(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    return None



# --- as its own process (`gateway bench`) ---------------------------------------------------------

class TimedFakeTwilio(FakeTwilio):
    """The fake plus what a benchmark needs: the wall-clock time each message was accepted.

    Keeps little per-request history (a bench sends hundreds of thousands; the newest `KEEP`
    messages stay for look-ups); `GET /_stats?since=N&limit=M` answers {"count": total,
    "received": [[unix time, To, Body[:60]], ...] from the N-th on, "fates": {what: count}}.
    """

    KEEP = 50_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received: list[tuple[float, str, str]] = []
        self.fate_counts: dict[str, int] = {}

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.router.add_get("/_stats", self._stats)
        return app

    def _on_accept(self, resource: dict[str, Any]) -> None:
        self.received.append((time.time(), resource["to"], resource["body"][:60]))
        while len(self.messages) > self.KEEP:
            del self.messages[next(iter(self.messages))]

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        try:
            return await super()._create_message(request)
        finally:
            self.requests.clear()
            for _, _, fate in self.fates:
                self.fate_counts[fate] = self.fate_counts.get(fate, 0) + 1
            self.fates.clear()

    async def _stats(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        until = since + int(request.query["limit"]) if "limit" in request.query else None
        return web.json_response({"count": len(self.received), "received": self.received[since:until],
                                  "fates": self.fate_counts})


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A fake Twilio REST API on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account-sid", default="AC" + "1" * 32)
    parser.add_argument("--auth-token", default="fake-twilio-token")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="share of create calls that fail: half HTTP 500, a quarter dropped before the "
                             "message is stored, a quarter dropped after it is (the answer is lost)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = TimedFakeTwilio(args.account_sid, args.auth_token)
        fake.latency = args.latency
        if args.fail_rate:
            part = args.fail_rate / 4
            fake.chaos(Misbehaviour(server_error=2 * part, drop=part, drop_after_accept=part, seed=args.seed))
        await fake.start(args.port)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    from gateway.app.loop import runner

    try:
        with runner() as loop:     # the gateway's loop (uvloop where installed): the fake costs the bench less
            loop.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
