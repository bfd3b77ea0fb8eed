"""`GET /api/v1/stream`: the agents' realtime feed over a WebSocket.

Events (message.created, message.status, conversation.updated, assignment, typing, presence) are
XADDed to one Redis Stream after commit by whichever process caused them (gateway.infra.realtime).
Each API process runs one `FeedHub` that tails the stream and hands every event to its own
sockets, filtered by what each agent may see, so the fan-out works across any number of API
processes. Every pushed event carries its stream id; a client reconnecting with
`?last_event_id=<id>` gets what it missed replayed, or `{"type": "refetch"}` when the stream no
longer holds that far back (trimmed, or Redis restarted): the data itself is in PostgreSQL.

Client messages: {"type": "heartbeat", "presence": "online"|"away"|"offline"},
{"type": "typing", "conversation_id": N, "typing": true}, {"type": "ping"}.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import WSMsgType, web

from gateway.app.log import get_logger
from gateway.app.metrics import FEED_EVENTS_READ
from gateway.domain import inputs, thread
from gateway.http.access import authenticate_token, principal, still_allowed
from gateway.http.errors import ApiError
from gateway.http.inbox_common import READ, dumps
from gateway.http.keys import RUNTIME, WEBSOCKETS
from gateway.http.openapi import ERROR, Param, operation
from gateway.http.rights import RIGHTS, Watcher
from gateway.inbox import actions, assignment
from gateway.inbox.scope import Scope, may_see, owners, scope_for
from gateway.infra import realtime

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)
REPLAY_LIMIT = 5_000
QUEUE_SIZE = 2_000


def _id_tuple(entry_id: str) -> tuple[int, int]:
    """A Redis stream id as a comparable pair; ValueError when it is not one."""
    ms, _, seq = entry_id.partition("-")
    if not (ms.isdigit() and (seq.isdigit() or seq == "")) or len(ms) > 19 or len(seq) > 19:
        raise ValueError(f"not a stream id: {entry_id!r}")
    return int(ms), int(seq or 0)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(eq=False)
class Subscriber:
    scope: Scope
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    watermark: tuple[int, int] = (0, 0)     # events at or below were already sent (replay)
    overflowed: bool = False
    revoked: bool = False                   # rights ended: nothing more is queued
    closing: asyncio.Task | None = None     # the close handshake a re-check started

    def offer(self, entry_id: str, event: dict, visibility: dict) -> None:
        if self.revoked or self.overflowed or _id_tuple(entry_id) <= self.watermark or not visible(self.scope, event, visibility):
            return
        try:
            self.queue.put_nowait((entry_id, event))
        except asyncio.QueueFull:   # a stalled client: tell it to refetch rather than grow forever
            self.overflowed = True


def visible(scope: Scope, event: dict, visibility: dict) -> bool:
    cid = event.get("conversation_id")
    if cid is None:
        return True
    try:
        row = visibility.get(int(cid))
    except (TypeError, ValueError):
        return False
    if row is None:
        return scope.everything
    if scope.sees(row[0], row[1]):
        return True
    # the agents who just lost sight of it hear that once (moved to another team, reassigned)
    if "previous_team_id" in event and scope.sees(event["previous_team_id"], None):
        return True
    return scope.agent_id is not None and event.get("previous_assignee_id") == scope.agent_id


async def lookup_visibility(pool: asyncpg.Pool, events: list[dict]) -> dict:
    ids = set()
    for e in events:
        try:
            ids.add(int(e["conversation_id"]))
        except (KeyError, TypeError, ValueError):
            pass
    if not ids:
        return {}
    return await owners(pool, ids)


def parse_entries(items) -> list[tuple[str, dict]]:
    out = []
    for entry_id, fields in items or []:
        raw = (fields or {}).get(b"e") or (fields or {}).get("e")
        try:
            event = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(event, dict):
            out.append((_s(entry_id), event))
    return out


class FeedHub:
    """This process's single reader of the events stream. It reads only while some socket listens:
    with none (a worker-heavy flash sale and no agent online) it reads nothing, and the first
    socket to come sets where it starts (`subscribe`)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.subscribers: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self.last_id = "$"
        self._listened = asyncio.Event()      # a socket subscribed while the hub was idle

    async def subscribe(self, sub: Subscriber) -> None:
        """Hand `sub` every event from now on. An idle hub starts after the stream's newest entry
        as of now, read here before the socket says hello, so nothing between is lost."""
        if not self.subscribers and self.last_id == "$":
            latest = await self.rt.redis.xrevrange(self.rt.keys.stream_events(), count=1)
            if self.last_id == "$":
                self.last_id = _s(latest[0][0]) if latest else "0-0"
        self.subscribers.add(sub)
        self._listened.set()

    async def run(self, stop: asyncio.Event) -> None:
        key = self.rt.keys.stream_events()
        while not stop.is_set():
            try:
                if not self.subscribers:
                    self.last_id = "$"
                    self._listened.clear()
                    await _first(self._listened.wait(), stop.wait())
                    continue
                if self.last_id == "$":
                    latest = await self.rt.redis.xrevrange(key, count=1)
                    self.last_id = _s(latest[0][0]) if latest else "0-0"
                reply = await self.rt.redis.xread({key: self.last_id}, block=500, count=500)
                for _, items in reply or []:
                    entries = parse_entries(items)
                    if items:
                        self.last_id = _s(items[-1][0])
                        FEED_EVENTS_READ.inc(len(items))
                    await self.dispatch(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # Redis or PostgreSQL away: sockets stay, we retry
                log.warning("feed reader failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def dispatch(self, entries: list[tuple[str, dict]]) -> None:
        if not entries or not self.subscribers:
            return
        visibility = await lookup_visibility(self.rt.pool, [e for _, e in entries])
        for sub in list(self.subscribers):
            for entry_id, event in entries:
                sub.offer(entry_id, event, visibility)


async def _first(*waits) -> None:
    """Wait until the first of these finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


FEED_HUB = web.AppKey("feed_hub", FeedHub)


async def replay(rt: Runtime, sub: Subscriber, last_event_id: str) -> bool:
    """Queue what came after `last_event_id`. False: the stream cannot say (client must refetch)."""
    key = rt.keys.stream_events()
    try:
        since = _id_tuple(last_event_id)
    except ValueError:
        return False
    first = await rt.redis.xrange(key, count=1)
    if not first or _id_tuple(_s(first[0][0])) > since and not await rt.redis.xrange(
            key, min=last_event_id, max=last_event_id):
        return False   # trimmed past it, or Redis restarted empty
    items = await rt.redis.xrange(key, min=f"({last_event_id}", count=REPLAY_LIMIT + 1)
    if len(items) > REPLAY_LIMIT:
        return False
    entries = parse_entries(items)
    visibility = await lookup_visibility(rt.pool, [e for _, e in entries])
    for entry_id, event in entries:
        sub.offer(entry_id, event, visibility)
    if items:
        sub.watermark = _id_tuple(_s(items[-1][0]))
    else:
        sub.watermark = since
    return True


async def _authenticate(request: web.Request):
    """Browsers cannot set headers on a WebSocket: `?access_token=` works too, and so does the
    console's session cookie (from the console's own origin)."""
    token = request.query.get("access_token")
    if token and "Authorization" not in request.headers:
        await authenticate_token(request, token)
    return await principal(request, *READ)


@operation("Realtime feed (WebSocket)", roles=READ,
           description="Upgrade to a WebSocket. Authenticate with the Authorization header or `?access_token=`. "
                       "Pushes `{id, type, ...}` for message.created, message.status, conversation.updated, "
                       "assignment, typing and presence, filtered to what the caller may see. Reconnect with "
                       "`?last_event_id=` to replay missed events; `{type: refetch}` means reload from the API.",
           query=(Param("last_event_id", {"type": "string", "pattern": "^[0-9]+-[0-9]+$"}),
                  Param("access_token", {"type": "string"})),
           responses={426: ERROR}, extra_responses={101: "switching to the WebSocket protocol"},
           tags=("realtime",))
async def stream(request: web.Request) -> web.StreamResponse:
    who = await _authenticate(request)
    ws = web.WebSocketResponse(heartbeat=30)
    if not ws.can_prepare(request).ok:
        raise ApiError(426, "upgrade_required", "this endpoint speaks WebSocket only")
    rt = request.app[RUNTIME]
    async with rt.pool.acquire(timeout=5) as conn:
        scope = await scope_for(conn, who)
    sub = Subscriber(scope)
    hub = request.app[FEED_HUB]
    await hub.subscribe(sub)
    watch = request.app[RIGHTS]
    watcher = Watcher(lambda: _recheck(rt, ws, who, sub), agent_id=who.agent_id, token_id=who.token_id,
                      name="agent-stream")
    watch.add(watcher)
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    latest = await rt.redis.xrevrange(rt.keys.stream_events(), count=1)
    await ws.send_str(dumps({"type": "hello", "role": who.role, "agent_id": who.agent_id,
                             "last_event_id": _s(latest[0][0]) if latest else None}))
    last_event_id = request.query.get("last_event_id")
    if last_event_id and not await replay(rt, sub, last_event_id):
        await ws.send_str(dumps({"type": "refetch", "reason": "events since last_event_id are not available"}))
    sender = asyncio.create_task(_send_loop(ws, sub))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            await _client_message(rt, ws, who, sub.scope, msg.data)
    finally:
        watch.discard(watcher)
        if sub.closing is not None:
            await asyncio.gather(sub.closing, return_exceptions=True)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        hub.subscribers.discard(sub)
    return ws


CLOSE_REVOKED = 4401


async def _recheck(rt: Runtime, ws: web.WebSocketResponse, who, sub: Subscriber) -> None:
    """The socket's rights now: closed when they ended, re-scoped when the agent's teams changed."""
    if ws.closed:
        return
    async with rt.pool.acquire(timeout=5) as conn:
        allowed = await still_allowed(conn, who)
        scope = await scope_for(conn, who) if allowed else None
    if not allowed:
        log.info("agent stream closed: rights ended", agent_id=who.agent_id, token_id=who.token_id)
        sub.revoked = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(dumps({"type": "revoked", "reason": "the token was revoked or the agent deactivated"}))
        # not awaited here (a slow client must not hold up other sockets' re-checks): the handler
        # waits for the handshake before it returns
        sub.closing = asyncio.create_task(ws.close(code=CLOSE_REVOKED, message=b"revoked"))
    elif scope != sub.scope:
        sub.scope = scope
        while not sub.queue.empty():    # queued under the old scope: the client refetches instead
            sub.queue.get_nowait()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(dumps({"type": "refetch", "reason": "what you may see changed"}))


async def _send_loop(ws: web.WebSocketResponse, sub: Subscriber) -> None:
    while not ws.closed:
        if sub.overflowed and sub.queue.empty():
            await ws.send_str(dumps({"type": "refetch", "reason": "too many events queued"}))
            sub.overflowed = False
        try:
            entry_id, event = await asyncio.wait_for(sub.queue.get(), 1.0)
        except asyncio.TimeoutError:
            continue
        if sub.revoked:
            return
        await ws.send_str(dumps({**event, "id": entry_id}))


async def _client_message(rt: Runtime, ws, who, scope: Scope, raw: str) -> None:
    try:
        data = inputs.loads(raw, field="frame")
    except inputs.InputError as exc:   # an error frame; the socket stays open
        await ws.send_str(dumps({"type": "error", "code": exc.code, "message": f"send JSON objects ({exc})"}))
        return
    if not isinstance(data, dict):
        await ws.send_str(dumps({"type": "error", "code": "invalid_json", "message": "send JSON objects"}))
        return
    kind = data.get("type")
    effects = thread.Effects()
    if kind == "ping":
        await ws.send_str(dumps({"type": "pong"}))
    elif kind == "heartbeat" and who.agent_id is not None:
        presence = data.get("presence", "online")
        if presence not in assignment.PRESENCES:
            await ws.send_str(dumps({"type": "error", "message": "presence must be online, away or offline"}))
            return
        async with rt.pool.acquire() as conn:
            await assignment.heartbeat(conn, who.agent_id, presence, effects)
    elif kind == "typing" and who.role in ("admin", "agent"):
        cid = data.get("conversation_id")
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 < cid < 2**63:
            return
        async with rt.pool.acquire() as conn:
            ok = await may_see(conn, scope, cid)
        if ok:
            actions.typing(effects, cid, who.agent_id, bool(data.get("typing", True)))
    await realtime.publish(rt.redis, rt.keys, effects.events)


async def _hub_ctx(app: web.Application):
    stop = asyncio.Event()
    task = asyncio.create_task(app[FEED_HUB].run(stop), name="feed-hub")
    yield
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def register(app: web.Application) -> None:
    app[FEED_HUB] = FeedHub(app[RUNTIME])
    app.cleanup_ctx.append(_hub_ctx)
    app.router.add_get("/api/v1/stream", stream)
