"""Helpers for the web chat tests: a visitor tab over a real aiohttp WebSocket client."""
from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp

from gateway.channels.webchat.sender import WebchatSender
from gateway.devtools.testing import running_gateway
from gateway.domain.types import Channel


@contextlib.asynccontextmanager
async def chat_gateway(settings, **kwargs):
    """A gateway in this process; its chat replies go through the WebchatSender (gateway.channels.webchat.sender)."""
    async with running_gateway(settings, **kwargs) as (runtime, base):
        assert isinstance(runtime.outbox.senders[Channel.WEBCHAT], WebchatSender)
        yield runtime, base


async def new_session(http: aiohttp.ClientSession, base: str, **body) -> dict:
    async with http.post(f"{base}/chat/session", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


class Tab:
    """One browser tab's socket: frames are read in order and kept in `seen`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.seen: list[dict] = []
        self.ready: dict | None = None

    async def send(self, **frame) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def say(self, client_msg_id: str, text: str, **extra) -> None:
        await self.send(type="message", client_msg_id=client_msg_id, text=text, **extra)

    async def next(self, type: str | None = None, timeout: float = 10.0, **match) -> dict:
        """The next frame of `type` whose fields equal `match` (frames in between are kept)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {type} frame matching {match}; saw {self.seen[-8:]}")
            msg = await self.ws.receive(timeout=left)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket closed ({msg.type}, {self.ws.close_code}) waiting for {type}")
            frame = json.loads(msg.data)
            self.seen.append(frame)
            if (type is None or frame.get("type") == type) and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def quiet(self, seconds: float = 0.5) -> list[dict]:
        """Frames that arrive within `seconds` (to check nothing unexpected comes)."""
        got = []
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                msg = await self.ws.receive(timeout=seconds)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                got.append(json.loads(msg.data))
        self.seen.extend(got)
        return got

    def messages(self) -> list[dict]:
        return [f for f in self.seen if f["type"] == "message"]

    async def close(self) -> None:
        await self.ws.close()


async def open_tab(http: aiohttp.ClientSession, base: str, token: str, *, last_seq: int = 0,
                   conversation_id: int | None = None, origin: str | None = None) -> Tab:
    headers = {"Origin": origin} if origin else {}
    ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/chat/ws", headers=headers)
    tab = Tab(ws)
    await tab.send(type="hello", token=token, last_seq=last_seq, conversation_id=conversation_id)
    tab.ready = await tab.next("ready")
    return tab
