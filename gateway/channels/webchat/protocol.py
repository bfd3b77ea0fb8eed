"""The chat socket's wire protocol (JSON text frames), as pure functions.

Client -> server:
  hello    {token, last_seq?, conversation_id?}   first frame unless ?token= was given
  message  {client_msg_id, text, reply_id?, reply_title?}   idempotent by client_msg_id
  typing   {state: "on" | "off"}
  read     {seq}                                   everything up to seq was seen
  identify {token}                                 the business's signed identity token
  ping     {}
Server -> client:
  ready    {visitor_id, conversation_id, last_seq, identified}
  message  {seq, message_id, direction, text, author_type, channel, created_at, buttons?,
            client_msg_id?, reply_id?, status?}
  ack      {client_msg_id, seq, message_id, duplicate}
  reset    {conversation_id}      the thread was merged and re-sequenced: drop what you have
  typing   {who: "agent" | "bot" | "visitor", state}
  read     {seq, who}
  identified {contact_id, conversation_id}
  error    {code, message, client_msg_id?, retry_after?}   with client_msg_id and a code other than
           rate_limited/unavailable: that message is refused for good (do not resend it)
  pong     {}
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from gateway.domain.inputs import InputError, loads, unstorable

MAX_TEXT = 4096                 # characters of one chat message
MAX_FRAME_BYTES = 16 * 1024     # a larger frame gets an error frame; it is not parsed
SOCKET_MAX_MSG = 64 * 1024      # beyond this aiohttp closes the socket with 1009 (message too big)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class FrameError(ValueError):
    def __init__(self, code: str, message: str, client_msg_id: str | None = None):
        super().__init__(message)
        self.code, self.message, self.client_msg_id = code, message, client_msg_id

    def frame(self) -> dict:
        out = {"type": "error", "code": self.code, "message": self.message}
        if self.client_msg_id:
            out["client_msg_id"] = self.client_msg_id
        return out


@dataclass(frozen=True)
class Hello:
    token: str
    last_seq: int = 0
    conversation_id: int | None = None


@dataclass(frozen=True)
class SendMessage:
    client_msg_id: str
    text: str
    reply_id: str | None = None
    reply_title: str | None = None


@dataclass(frozen=True)
class Typing:
    on: bool


@dataclass(frozen=True)
class Read:
    seq: int


@dataclass(frozen=True)
class Identify:
    token: str


@dataclass(frozen=True)
class Ping:
    pass


ClientFrame = Hello | SendMessage | Typing | Read | Identify | Ping


def _int(value, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FrameError("invalid_field", f"{name} must be a whole number >= {minimum}")
    return value


def _opt_str(data: dict, key: str, limit: int = 200, cmid: str | None = None) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise FrameError("invalid_field", f"{key} must be a string of at most {limit} characters", cmid)
    reason = unstorable(value)
    if reason:
        raise FrameError("invalid_field", f"{key} {reason}", cmid)
    return value


def parse_frame(raw: str) -> ClientFrame:
    """One client frame; raises FrameError with the code an error frame carries."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        data = loads(raw, field="frame", strings="keep")   # strings are checked per field below
    except InputError as exc:
        raise FrameError("bad_frame", f"frames are JSON objects ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise FrameError("bad_frame", "frames are JSON objects with a type")
    kind = data["type"]
    if kind == "message":
        cmid = data.get("client_msg_id")
        if not isinstance(cmid, str) or not _CLIENT_ID.match(cmid):
            raise FrameError("invalid_field", "client_msg_id must be 1-100 characters of A-Z a-z 0-9 _ . : -")
        text = data.get("text", "")
        if not isinstance(text, str):
            raise FrameError("invalid_field", "text must be a string", cmid)
        if len(text) > MAX_TEXT:
            raise FrameError("too_large", f"text exceeds {MAX_TEXT} characters", cmid)
        reason = unstorable(text)
        if reason:   # the widget drops a message rejected with its client_msg_id: no resend loop
            raise FrameError("invalid_text", f"text {reason}", cmid)
        reply_id = _opt_str(data, "reply_id", cmid=cmid)
        if not text.strip() and not reply_id:
            raise FrameError("invalid_field", "a message needs text", cmid)
        return SendMessage(cmid, text, reply_id, _opt_str(data, "reply_title", cmid=cmid))
    if kind == "hello":
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise FrameError("invalid_token", "hello needs the session token")
        cid = data.get("conversation_id")
        return Hello(token, _int(data.get("last_seq") or 0, "last_seq"),
                     _int(cid, "conversation_id", minimum=1) if cid is not None else None)
    if kind == "typing":
        if data.get("state") not in ("on", "off"):
            raise FrameError("invalid_field", "typing.state must be on or off")
        return Typing(data["state"] == "on")
    if kind == "read":
        return Read(_int(data.get("seq"), "seq", minimum=1))
    if kind == "identify":
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise FrameError("invalid_field", "identify needs the identity token")
        return Identify(token)
    if kind == "ping":
        return Ping()
    raise FrameError("bad_frame", f"unknown frame type {kind[:40]!r}")


def client_msg_id_of(provider_message_id: str | None, visitor_id: str | None = None) -> str | None:
    """Our provider id for chat messages is "<visitor id>:<client_msg_id>"."""
    if not provider_message_id or ":" not in provider_message_id:
        return None
    owner, _, cmid = provider_message_id.partition(":")
    if visitor_id is not None and owner != visitor_id:
        return None
    return cmid


def message_frame(row, visitor_id: str | None = None) -> dict:
    """A thread row (messages table) as the widget sees it."""
    content = row["content"] or {}
    created: datetime = row["created_at"]
    frame = {
        "type": "message", "seq": row["seq"], "message_id": row["id"], "direction": row["direction"],
        "text": row["body"], "author_type": row["author_type"], "channel": row["channel"],
        "created_at": created.isoformat() if created else None,
    }
    if content.get("buttons"):
        frame["buttons"] = [{"id": b["id"], "title": b["title"]} for b in content["buttons"]]
    if row["direction"] == "in":
        if row["channel"] == "webchat":
            cmid = client_msg_id_of(row["provider_message_id"], visitor_id)
            if cmid:
                frame["client_msg_id"] = cmid
        if content.get("reply_id"):
            frame["reply_id"] = content["reply_id"]
    elif row["status"]:
        frame["status"] = row["status"]
    return frame


class TokenBucket:
    """Per-connection rate limit: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        """0.0 when allowed; otherwise the seconds until a token is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def retry_after(wait: float) -> float:
    """The `retry_after` a rate-limited frame carries: the wait rounded UP to the centisecond, never
    0 (rounding 0.004 s to the nearest would tell the client it may retry at once, and be refused again)."""
    return max(0.01, math.ceil(round(wait * 100, 6)) / 100)   # round(): 1.1 * 100 is 110.00000000000001


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """The Origin allow-list. No Origin header: not a browser, allowed (tokens still apply).

    The gateway's own pages (same origin as the Host header) always pass. With an allow-list, only
    exact origins ("https://shop.example.com") or "*" pass; without one, localhost too.
    """
    if not origin:
        return True
    origin = origin.strip().rstrip("/").lower()
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if host and parts.netloc == host.strip().lower():
        return True
    if allowed:
        return "*" in allowed or origin in {a.strip().rstrip("/").lower() for a in allowed}
    return parts.hostname in _LOCAL_HOSTS
