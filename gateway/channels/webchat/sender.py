"""The web chat sender: "sending" is publishing to the visitor's open tabs, wherever they are connected.

Every API process holding a socket for the conversation gets the event over Redis pub/sub and
pushes the message (read back from PostgreSQL by seq, the source of truth) to its tabs. A visitor
with no tab open sees the message on return, when the widget resumes from its last seq; so a
message with no listener is still sent.
"""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.app.log import get_logger
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult
from gateway.infra.redis_client import shard_publish
from gateway.pipeline.queue import Keys

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)


class WebchatSender:
    channel = Channel.WEBCHAT
    provider = "webchat"

    def __init__(self, redis: aioredis.Redis, keys: Keys):
        self.redis = redis
        self.keys = keys

    async def send(self, msg: OutgoingMessage) -> SendResult:
        conversation_id = msg.metadata.get("conversation_id")
        if conversation_id is None:
            return SendResult(SendOutcome.FAILED, error_code="no_conversation",
                              error_message="chat messages need metadata.conversation_id")
        event = {"type": "chat.outbound", "conversation_id": conversation_id, "message_id": msg.message_id,
                 "seq": msg.metadata.get("seq"), "visitor_id": msg.to, "text": msg.text,
                 "buttons": [{k: v for k, v in dataclasses.asdict(b).items() if v is not None}
                             for b in msg.buttons]}
        try:
            listeners = await shard_publish(self.redis, self.keys.chat_channel(int(conversation_id)),
                                            json.dumps(event))
        except (RedisError, OSError) as exc:
            return SendResult(SendOutcome.RETRY, error_code="redis_unavailable", error_message=str(exc))
        log.debug("chat message published", message_id=msg.message_id, listeners=listeners)
        return SendResult(SendOutcome.SENT, provider_message_id=f"chat-{msg.message_id}", status="sent",
                          extra={"listeners": listeners})


def live_senders(rt: Runtime) -> dict[Channel, WebchatSender]:
    """Web chat is always live: its sender publishes to the visitor's sockets."""
    return {Channel.WEBCHAT: WebchatSender(rt.redis, rt.keys)}
