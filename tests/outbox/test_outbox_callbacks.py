"""Status callbacks that arrive before the send's answer are kept and applied; a delivered that
wins over a failure clears the failure's error."""
from __future__ import annotations

from gateway.devtools.fakes.replies import number, seed
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain.status import apply_status


def twilio_settings(settings, fake, **changes):
    return settings.with_(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                          twilio_from_number="+15550009999", twilio_api_base=fake.base_url, **changes)


async def test_a_callback_before_the_send_answer_is_applied_once_the_id_is_known(settings, pool, clean,
                                                                                  fake_twilio):
    """Issue 19.6: Twilio called back before its 201 reached us; the message stayed queued forever."""
    fake_twilio.early_callbacks = "delivered"
    async with running_gateway(twilio_settings(settings, fake_twilio)) as (rt, url):
        await seed(pool, 1, 1)
        rt.outbox.wake()

        async def delivered():
            return await pool.fetchval("SELECT status = 'delivered' FROM messages WHERE direction = 'out'")
        await wait_for(delivered, timeout=20)
    assert await pool.fetchval("SELECT count(*) FROM early_statuses") == 0
    assert len(fake_twilio.accepted(number(1))) == 1


async def test_an_unknown_provider_id_is_kept_not_applied_elsewhere(pool, clean):
    async with pool.acquire() as conn:
        assert await apply_status(conn, channel="sms", provider_message_id="SMnope", status="delivered",
                                  keep_unmatched=True) is None
    assert await pool.fetchval("SELECT status FROM early_statuses WHERE provider_message_id = 'SMnope'") == "delivered"


async def test_delivered_after_failed_clears_the_error(pool, clean):
    await seed(pool, 1, 1)
    await pool.execute("UPDATE messages SET provider_message_id = 'SM1', status = 'failed', error_code = '30003', "
                       "error_message = 'Unreachable destination handset' WHERE direction = 'out'")
    async with pool.acquire() as conn:
        assert await apply_status(conn, channel="sms", provider_message_id="SM1", status="delivered")
    row = await pool.fetchrow("SELECT status, error_code, error_message FROM messages WHERE direction = 'out'")
    assert dict(row) == {"status": "delivered", "error_code": None, "error_message": None}
