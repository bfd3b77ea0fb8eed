"""Fixtures for the outbox tests: senders speaking to the (misbehaving on demand) fake Twilio."""
from __future__ import annotations

import pytest

from gateway.channels.twilio.sender import TwilioSender
from gateway.domain.types import Channel
from gateway.pipeline.outbox import OutboxSender
from gateway.pipeline.queue import Keys
from gateway.pipeline.ratelimit import RateLimiter

FROM = "+15550009999"


@pytest.fixture
def make_sender(pool, redis_client, settings, fake_twilio, http):
    """An OutboxSender on the test database speaking to the fake Twilio (SMS only)."""

    def make(*, timeout: float = 10.0, name: str | None = None, **settings_changes) -> OutboxSender:
        s = settings.with_(**settings_changes)
        twilio = TwilioSender(http, channel=Channel.SMS, account_sid=fake_twilio.account_sid,
                              auth_token=fake_twilio.auth_token, api_base=fake_twilio.base_url,
                              from_address=FROM, timeout=timeout)
        keys = Keys(s.redis_prefix)
        limiter = RateLimiter(redis_client, keys, default_rate=s.rate_limit_per_second, burst=s.rate_limit_burst)
        return OutboxSender(pool, redis_client, keys, s, {Channel.SMS: twilio}, rate_limiter=limiter, name=name)

    return make
