"""Meta 131050 ("stopped marketing messages from your business") ends marketing only, not replies."""
from __future__ import annotations

from gateway import consent
from gateway.channels.whatsapp.sender import WhatsAppCloudSender
from gateway.fakes.graph import FakeGraph
from gateway.fakes.replies import number, seed
from gateway.outbox import OutboxSender
from gateway.queue import Keys
from gateway.types import Channel


async def test_whatsapp_131050_blocks_marketing_and_lets_replies_through(settings, pool, clean, redis_client, http):
    await seed(pool, 1, 2, channel="whatsapp")
    async with FakeGraph() as graph:
        graph.fail_next(1, code=131050)
        cloud = WhatsAppCloudSender(http, access_token=graph.access_token, phone_number_id=graph.phone_number_id,
                                    api_base=graph.api_base)
        sender = OutboxSender(pool, redis_client, Keys(settings.redis_prefix), settings, {Channel.WHATSAPP: cloud})
        await sender.send_due()
        assert [m["text"]["body"] for m in graph.sent] == ["c1-2"]     # the next reply still went
    to = number(1)
    assert await consent.blocked_reason(pool, kind="phone", address=to, channel="whatsapp", purpose="marketing")
    assert not await consent.blocked_reason(pool, kind="phone", address=to, channel="whatsapp", purpose="reply")
