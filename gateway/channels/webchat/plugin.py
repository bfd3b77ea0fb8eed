"""Runtime plugin (see gateway.app.runtime.PLUGINS): chat replies go out through the WebchatSender."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.webchat.sender import WebchatSender
from gateway.domain.types import Channel

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime


async def setup(runtime: Runtime) -> WebchatSender:
    sender = WebchatSender(runtime.redis, runtime.keys)
    runtime.senders[Channel.WEBCHAT] = sender
    runtime.outbox.senders[Channel.WEBCHAT] = sender
    return sender
