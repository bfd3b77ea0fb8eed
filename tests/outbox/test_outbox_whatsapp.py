"""WhatsApp Cloud through the outbox: Meta 131050 ("stopped marketing messages from your business") ends
marketing only, not replies; Meta throttling pauses the WhatsApp sender and nothing else."""
from __future__ import annotations

from gateway.channels.whatsapp.sender import WhatsAppCloudSender
from gateway.devtools.fakes.graph import FakeGraph
from gateway.devtools.fakes.replies import number, seed
from gateway.domain import consent
from gateway.domain.types import Channel
from gateway.pipeline.outbox import OutboxSender
from gateway.pipeline.queue import Keys


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
    recorded = await pool.fetch("SELECT purpose, granted FROM consents WHERE address = $1", to)
    assert [tuple(r) for r in recorded] == [("marketing", False)]
    assert not await consent.blocked_reason(pool, kind="phone", address=to, channel="whatsapp", purpose="reply")


async def test_meta_throttling_pauses_whatsapp_while_sms_keeps_going(settings, pool, clean, redis_client, http,
                                                                     fake_twilio):
    """A 130429 from Meta pauses that sender for its Retry-After; Twilio SMS is another sender."""
    import asyncio

    from gateway.channels.twilio.sender import TwilioSender
    from gateway.devtools.fakes import Misbehaviour
    from gateway.devtools.fakes.replies import unfinished
    from gateway.devtools.testing import wait_for
    from gateway.pipeline.ratelimit import RateLimiter

    await seed(pool, 5, 1, channel="whatsapp", area=556)
    await seed(pool, 5, 1)
    async with FakeGraph() as graph:
        graph.chaos(Misbehaviour(throttle=1.0, retry_after=30))
        senders = {Channel.WHATSAPP: WhatsAppCloudSender(http, access_token=graph.access_token,
                                                         phone_number_id=graph.phone_number_id,
                                                         api_base=graph.api_base),
                   Channel.SMS: TwilioSender(http, channel=Channel.SMS, account_sid=fake_twilio.account_sid,
                                             auth_token=fake_twilio.auth_token, api_base=fake_twilio.base_url,
                                             from_address="+15550009999")}
        keys = Keys(settings.redis_prefix)
        sender = OutboxSender(pool, redis_client, keys, settings, senders,
                              rate_limiter=RateLimiter(redis_client, keys, default_rate=0, burst=1))
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, poll_interval=0.05))
        try:
            await wait_for(lambda: _sms_done(fake_twilio), timeout=20)
            throttled = len(graph.requests)
            await asyncio.sleep(1.5)
            assert len(graph.requests) == throttled <= 5     # only the sends already in flight
            assert await unfinished(pool) == 5               # the WhatsApp replies wait, none lost
        finally:
            stop.set()
            await task


async def _sms_done(fake) -> bool:
    return len(fake.accepted()) == 5
