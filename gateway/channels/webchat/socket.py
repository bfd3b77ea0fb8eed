"""`GET /chat/ws`: one visitor tab's WebSocket (protocol in gateway.channels.webchat.protocol).

The socket authenticates with the signed session token (`?token=` or a first `hello` frame), then:
inbound messages go through gateway.pipeline.intake.accept (idempotent by client_msg_id, seq assigned by
PostgreSQL); whatever is newer than what this tab has is read from PostgreSQL by seq and pushed,
whenever a Redis pub/sub event says the thread changed (so every tab on every process gets the
bot's and the agents' replies, and a reconnecting tab resumes from its last seq).
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from gateway.app.log import get_logger
from gateway.channels.webchat import identify, protocol, store
from gateway.channels.webchat.hub import ChatHub, visitor_channel
from gateway.channels.webchat.tokens import Session, TokenError, verify_session
from gateway.domain import inputs, thread
from gateway.domain.conversation import Mode
from gateway.domain.identity import AddressError
from gateway.domain.inputs import InputError
from gateway.domain.types import Channel, Inbound
from gateway.http.errors import DB_UNAVAILABLE, ApiError
from gateway.http.keys import RUNTIME, WEBSOCKETS
from gateway.http.rights import RIGHTS, RightsWatch, Watcher
from gateway.infra import realtime
from gateway.infra.redis_client import shard_publish
from gateway.pipeline import intake

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

CHAT_HUB = web.AppKey("chat_hub", ChatHub)

AUTH_TIMEOUT = 10.0
HEARTBEAT = 20.0              # protocol-level pings; a tab that stops answering is closed
MESSAGE_RATE, MESSAGE_BURST = 5.0, 10
FRAME_RATE, FRAME_BURST = 20.0, 40
MAX_RATE_VIOLATIONS = 50      # then the socket is closed (4429)
TYPING_TTL = 10               # seconds a visitor's "typing" lives without a refresh
TYPING_REFRESH = 3.0
BOT_TYPING_TTL = 8

CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_TRY_AGAIN_LATER = 1013

# events on a conversation's channel after which this tab may be behind PostgreSQL
_POKES = {"message.created", "chat.outbound", "chat.inbound", "chat.resync"}


def check_origin(request: web.Request) -> None:
    allowed = request.app[RUNTIME].settings.chat_allowed_origins
    if not protocol.origin_allowed(request.headers.get("Origin"), request.host, allowed):
        log.info("chat origin rejected", origin=request.headers.get("Origin"))
        raise ApiError(403, "origin_not_allowed",
                       "this origin may not use the chat; add it to GATEWAY_CHAT_ALLOWED_ORIGINS")


async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    check_origin(request)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=protocol.SOCKET_MAX_MSG)
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    connection = ChatConnection(request.app[RUNTIME], request.app[CHAT_HUB], ws, request.app[RIGHTS],
                                site=urlsplit(request.headers.get("Origin") or "").hostname)
    try:
        await connection.run(request.query)
    except DB_UNAVAILABLE as exc:
        log.warning("chat socket closed: storage unavailable", error=type(exc).__name__)
        await connection.fail("unavailable", "storage is temporarily unavailable; reconnect later",
                              CLOSE_TRY_AGAIN_LATER)
    finally:
        await connection.close()
    return ws


class ChatConnection:
    def __init__(self, runtime: Runtime, hub: ChatHub, ws: web.WebSocketResponse, rights: RightsWatch | None = None,
                 site: str | None = None):
        self.rt = runtime
        self.site = site   # the host of the page the widget runs on (its Origin): picks the chat inbox
        self.rights = rights
        self.watcher = Watcher(self._recheck, name="chat")
        self._closing: asyncio.Task | None = None
        self.hub = hub
        self.ws = ws
        self.session: Session | None = None
        self.conversation_id: int | None = None
        self.sent_seq = 0
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.frames = protocol.TokenBucket(FRAME_RATE, FRAME_BURST)
        self.messages = protocol.TokenBucket(MESSAGE_RATE, MESSAGE_BURST)
        self.violations = 0
        self.typing_sent_at: float | None = None
        self._flush_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._bind_lock = asyncio.Lock()       # following a thread: lookup, (un)subscribe, reset
        self._subscribed: list[str] = []
        self._merges_followed: set[int] = set()   # merged-away threads this tab already left

    # -- life cycle ----------------------------------------------------------------------------
    async def run(self, query) -> None:
        hello = await self._authenticate(query)
        if hello is None:
            return
        if self.rights is not None:
            self.rights.add(self.watcher)
        await self._subscribe(visitor_channel(self.rt.keys, self.session.visitor_id))
        await self._start(hello)
        pump = asyncio.create_task(self._pump(), name="chat-pump")
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.send({"type": "error", "code": "bad_frame", "message": "frames are JSON text"})
                elif msg.type == WSMsgType.ERROR:
                    log.info("chat socket error", error=str(self.ws.exception()))
                    break
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _recheck(self) -> None:
        """The session's right ends with its token: an expired session's socket is closed (4401)."""
        if self.session is not None and not self.ws.closed and self._closing is None \
                and time.time() >= self.session.expires_at:
            log.info("chat socket closed: session expired")
            # not awaited here (a slow tab must not hold up other re-checks); close() waits for it
            self._closing = asyncio.create_task(
                self.fail("expired_token", "the chat session expired; start a new one", CLOSE_UNAUTHORIZED))

    async def close(self) -> None:
        if self.rights is not None:
            self.rights.discard(self.watcher)
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
        for channel in self._subscribed:
            await self.hub.unsubscribe(channel, self.events.put_nowait)
        self._subscribed.clear()
        if self.typing_sent_at is not None:
            await self._typing(False)
        if not self.ws.closed:
            await self.ws.close()

    async def send(self, frame: dict) -> bool:
        if self.ws.closed:
            return False
        async with self._send_lock:
            try:
                await self.ws.send_str(json.dumps(frame, ensure_ascii=False, default=str))
                return True
            except (ConnectionError, RuntimeError):
                return False

    async def fail(self, code: str, message: str, close_code: int) -> None:
        await self.send({"type": "error", "code": code, "message": message})
        await self.ws.close(code=close_code, message=code.encode())

    async def _authenticate(self, query) -> protocol.Hello | None:
        if query.get("token"):
            try:
                hello = protocol.Hello(query["token"], inputs.digits_int(query.get("last_seq") or "0", "last_seq"),
                                       inputs.digits_id(query["conversation_id"], "conversation_id")
                                       if query.get("conversation_id") else None)
            except inputs.InputError:
                await self.fail("bad_frame", "last_seq and conversation_id are numbers", CLOSE_UNAUTHORIZED)
                return None
        else:
            try:
                msg = await self.ws.receive(timeout=AUTH_TIMEOUT)
            except asyncio.TimeoutError:
                await self.fail("auth_timeout", f"send hello with the session token within {AUTH_TIMEOUT:.0f}s",
                                 CLOSE_AUTH_TIMEOUT)
                return None
            if msg.type != WSMsgType.TEXT:
                return None
            try:
                hello = protocol.parse_frame(msg.data)
            except protocol.FrameError as exc:
                await self.fail(exc.code, exc.message, CLOSE_UNAUTHORIZED)
                return None
            if not isinstance(hello, protocol.Hello):
                await self.fail("invalid_token", "the first frame must be hello with the session token",
                                 CLOSE_UNAUTHORIZED)
                return None
        try:
            self.session = verify_session(self.rt.settings.secret_key, hello.token)
        except TokenError as exc:
            log.info("chat token rejected", code=exc.code)
            await self.fail(exc.code, str(exc), CLOSE_UNAUTHORIZED)
            return None
        return hello

    async def _start(self, hello: protocol.Hello) -> None:
        found = await store.visitor_thread(self.rt.pool, self.session.visitor_id)
        await self._bind(found.conversation_id)
        await self.send({"type": "ready", "visitor_id": self.session.visitor_id,
                         "conversation_id": found.conversation_id, "last_seq": found.last_seq,
                         "identified": found.identified})
        stale = hello.last_seq > found.last_seq or (
            hello.last_seq > 0 and hello.conversation_id != found.conversation_id)
        if stale:   # the thread was merged (re-sequenced) or replaced while this tab was away
            await self.send({"type": "reset", "conversation_id": found.conversation_id})
            self.sent_seq = 0
        else:
            self.sent_seq = hello.last_seq
        await self._flush()
        if found.conversation_id is not None:
            try:
                if await self.rt.redis.exists(self.rt.keys.typing(found.conversation_id, "agent")):
                    await self.send({"type": "typing", "who": "agent", "state": "on"})
            except Exception:  # Redis down: typing is cosmetic
                pass

    # -- subscriptions -------------------------------------------------------------------------
    async def _subscribe(self, channel: str) -> None:
        await self.hub.subscribe(channel, self.events.put_nowait)
        self._subscribed.append(channel)

    async def _bind(self, conversation_id: int | None) -> None:
        """Follow `conversation_id`'s events from now on (instead of the previous thread's)."""
        if conversation_id == self.conversation_id:
            return
        if self.conversation_id is not None:
            old = self.rt.keys.chat_channel(self.conversation_id)
            await self.hub.unsubscribe(old, self.events.put_nowait)
            self._subscribed.remove(old)
        self.conversation_id = conversation_id
        if conversation_id is not None:
            await self._subscribe(self.rt.keys.chat_channel(conversation_id))

    async def _rebind(self, *, resequenced: bool = False) -> None:
        """The visitor's thread may have changed (first message, identified, merged): follow it."""
        async with self._bind_lock, self._flush_lock:   # no push of the old thread after the reset
            found = await store.visitor_thread(self.rt.pool, self.session.visitor_id)
            previous = self.conversation_id
            if found.conversation_id == previous and not resequenced:
                return
            await self._bind(found.conversation_id)
            if previous is not None:   # seqs of another or a re-sequenced thread are not comparable
                await self.send({"type": "reset", "conversation_id": found.conversation_id})
                self.sent_seq = 0
        await self._flush()

    # -- server -> client ----------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            events = [await self.events.get()]
            while not self.events.empty():
                events.append(self.events.get_nowait())
            try:
                await self._handle_events(events)
            except DB_UNAVAILABLE as exc:
                log.warning("chat push failed; the tab catches up on the next event", error=str(exc))
            except Exception as exc:  # a bug must not leave the tab silently deaf: log, go on
                log.exception("chat push failed", error=str(exc))

    async def _handle_events(self, events: list[dict]) -> None:
        poke = False
        for event in events:
            kind = event.get("type")
            if kind == "chat.rebind":
                await self._rebind()
            elif kind == "conversation.merged" and event.get("merged_from") not in self._merges_followed:
                await self._rebind(resequenced=True)
            elif kind in _POKES:
                poke = True
            elif kind == "typing" and event.get("who") in ("agent", "bot"):
                frame = {"type": "typing", "who": event["who"], "state": event.get("state", "off")}
                if event.get("ttl"):
                    frame["ttl"] = event["ttl"]
                await self.send(frame)
            elif kind == "conversation.read" and event.get("reader") != "visitor":
                await self.send({"type": "read", "seq": event.get("seq"), "who": event.get("reader", "agent")})
        if poke:
            await self._flush()

    async def _flush(self) -> None:
        """Push every visible thread entry newer than what this tab has, in seq order."""
        if self.conversation_id is None:
            return
        async with self._flush_lock:
            while True:
                rows = await store.history(self.rt.pool, self.conversation_id, self.sent_seq)
                for row in rows:
                    if not await self.send(protocol.message_frame(row, self.session.visitor_id)):
                        return
                    self.sent_seq = row["seq"]
                reached = [r["id"] for r in rows if r["direction"] == "out" and r["channel"] == "webchat"
                           and r["status"] in (None, "queued", "sent")]
                if reached:
                    await self._set_status("delivered", message_ids=reached)
                if len(rows) < store.HISTORY_PAGE:
                    return

    async def _set_status(self, status: str, **where) -> None:
        effects = thread.Effects()

        async def changed(conn, row, new):
            effects.emit("message.status", conversation_id=row["conversation_id"], message_id=row["id"],
                         status=new)
            await self.rt.hooks.on_status(conn, row, new, effects)

        async with self.rt.pool.acquire() as conn:
            await store.advance_status(conn, self.conversation_id, status, on_change=changed, **where)
        await self.rt.publish_effects(effects)

    # -- client -> server ----------------------------------------------------------------------
    async def _on_text(self, raw: str) -> None:
        wait = self.frames.take()
        if wait:
            await self._rate_limited(wait)
            return
        try:
            frame = protocol.parse_frame(raw)
        except protocol.FrameError as exc:
            await self.send(exc.frame())
            return
        try:
            if isinstance(frame, protocol.SendMessage):
                await self._on_message(frame)
            elif isinstance(frame, protocol.Typing):
                await self._typing(frame.on)
            elif isinstance(frame, protocol.Read):
                await self._on_read(frame.seq)
            elif isinstance(frame, protocol.Identify):
                await self._on_identify(frame.token)
            elif isinstance(frame, protocol.Ping):
                await self.send({"type": "pong"})
            else:
                await self.send({"type": "error", "code": "bad_frame", "message": "already authenticated"})
        except DB_UNAVAILABLE as exc:
            log.warning("chat frame failed: storage unavailable", error=str(exc))
            error = {"type": "error", "code": "unavailable", "message": "storage is unavailable; retry later"}
            if isinstance(frame, protocol.SendMessage):
                error["client_msg_id"] = frame.client_msg_id
            await self.send(error)
        except Exception as exc:   # a bug must not kill the visitor's socket: log it, answer, go on
            log.exception("chat frame failed", error=type(exc).__name__)
            await self.send({"type": "error", "code": "internal", "message": "this frame could not be handled"})

    async def _rate_limited(self, wait: float, client_msg_id: str | None = None) -> None:
        self.violations += 1
        if self.violations > MAX_RATE_VIOLATIONS:
            await self.fail("rate_limited", "too many frames; closing", CLOSE_RATE_LIMITED)
            return
        frame = {"type": "error", "code": "rate_limited", "message": "slow down",
                 "retry_after": protocol.retry_after(wait)}
        if client_msg_id:
            frame["client_msg_id"] = client_msg_id
        await self.send(frame)

    async def _on_message(self, frame: protocol.SendMessage) -> None:
        wait = self.messages.take()
        if wait:
            await self._rate_limited(wait, frame.client_msg_id)
            return
        visitor_id = self.session.visitor_id
        inbound = Inbound(
            channel=Channel.WEBCHAT, provider="webchat", provider_message_id=f"{visitor_id}:{frame.client_msg_id}",
            sender=visitor_id, text=frame.text, reply_id=frame.reply_id, reply_title=frame.reply_title,
            received_at=datetime.now(timezone.utc), raw={"client_msg_id": frame.client_msg_id},
            extra={"site": self.site} if self.site else {})
        try:
            # Shielded: once started, the commit finishes even if the tab goes away meanwhile.
            result = await asyncio.shield(intake.accept(self.rt, inbound))
        except (InputError, AddressError) as exc:
            # Refused for good, with its client_msg_id, so the widget stops resending it.
            log.info("chat message refused", error=str(exc))
            await self.send({"type": "error", "code": getattr(exc, "code", "invalid_field"),
                             "message": str(exc), "client_msg_id": frame.client_msg_id})
            return
        await self.send({"type": "ack", "client_msg_id": frame.client_msg_id, "seq": result.seq,
                         "message_id": result.message_id, "duplicate": result.duplicate})
        if result.conversation_id != self.conversation_id:
            first = self.conversation_id is None
            async with self._bind_lock:
                await self._bind(result.conversation_id)
            if first:   # tell this visitor's other tabs which thread to follow now
                await self._publish_visitor({"type": "chat.rebind"})
        if not result.duplicate:
            await self._after_inbound(result.conversation_id, result.seq)
        await self._flush()

    async def _after_inbound(self, conversation_id: int, seq: int) -> None:
        """Let the visitor's other tabs (on any process) show the message; show the bot typing."""
        events = [("chat.inbound", {"conversation_id": conversation_id, "seq": seq})]
        mode = await store.conversation_mode(self.rt.pool, conversation_id)
        if mode == Mode.BOT and self.rt.settings.default_handler != "agent":
            events.append(("typing", {"conversation_id": conversation_id, "who": "bot", "state": "on",
                                      "ttl": BOT_TYPING_TTL}))
        await self._publish(events)

    async def _publish(self, events: list[tuple[str, dict]]) -> None:
        """Chat-only events: to the conversation's pub/sub channel, not the agents' feed stream."""
        try:
            async with self.rt.redis.pipeline(transaction=False) as pipe:
                for kind, payload in events:
                    shard_publish(pipe, self.rt.keys.chat_channel(payload["conversation_id"]),
                                  json.dumps({"type": kind, **payload}))
                await pipe.execute()
        except Exception as exc:
            realtime.dropped(len(events), exc, "chat")

    async def _publish_visitor(self, event: dict) -> None:
        try:
            await shard_publish(self.rt.redis, visitor_channel(self.rt.keys, self.session.visitor_id),
                                json.dumps(event))
        except Exception as exc:
            realtime.dropped(1, exc, "chat")

    async def _typing(self, on: bool) -> None:
        cid = self.conversation_id
        if cid is None:
            return
        now = time.monotonic()
        if on and self.typing_sent_at is not None and now - self.typing_sent_at < TYPING_REFRESH:
            return
        if not on and self.typing_sent_at is None:
            return
        self.typing_sent_at = now if on else None
        key = self.rt.keys.typing(cid, "visitor")
        try:
            if on:
                await self.rt.redis.set(key, self.session.visitor_id, ex=TYPING_TTL)
            else:
                await self.rt.redis.delete(key)
        except Exception as exc:
            log.debug("typing state not stored", error=str(exc))
        # through the agents' feed too: the inbox shows "customer is typing"
        await realtime.publish(self.rt.redis, self.rt.keys, [(
            "typing", {"conversation_id": cid, "who": "visitor", "state": "on" if on else "off",
                       "ttl": TYPING_TTL})])

    async def _on_read(self, seq: int) -> None:
        if self.conversation_id is None:
            return
        await self._set_status("read", up_to_seq=seq)
        await realtime.publish(self.rt.redis, self.rt.keys, [(
            "conversation.read", {"conversation_id": self.conversation_id, "seq": seq, "reader": "visitor"})])

    async def _on_identify(self, token: str) -> None:
        try:
            result = await identify.identify(self.rt, self.session.visitor_id, token)
        except TokenError as exc:
            await self.send({"type": "error", "code": exc.code, "message": str(exc)})
            return
        await self.send({"type": "identified", "conversation_id": result.conversation_id})
        merged = result.merged_from is not None
        if merged:
            self._merges_followed.add(result.previous_conversation_id)
        await self._rebind(resequenced=merged)
