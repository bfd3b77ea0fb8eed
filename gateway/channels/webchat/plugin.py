"""Runtime plugin (see gateway.runtime.PLUGINS): chat replies go out through the WebchatSender."""
from __future__ import annotations

from gateway.channels.webchat.sender import WebchatSender
from gateway.types import Channel


async def setup(runtime) -> WebchatSender:
    sender = WebchatSender(runtime.redis, runtime.keys)
    runtime.senders[Channel.WEBCHAT] = sender
    runtime.outbox.senders[Channel.WEBCHAT] = sender
    return sender
