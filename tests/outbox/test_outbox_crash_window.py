"""Issue 11.5 / 19.5: an attempt whose outcome is unknown (crash, dropped answer) is looked up at the
provider before it is resent, so what the provider accepted is not sent twice."""
from __future__ import annotations

from gateway.devtools.fakes.replies import number, seed
from gateway.devtools.fakes.twilio import Misbehaviour
from gateway.pipeline.outbox import store
from gateway.pipeline.outbox.compose import build_outgoing


async def test_an_answer_lost_after_acceptance_is_found_not_resent(pool, clean, make_sender, fake_twilio):
    await seed(pool, 1, 1)
    sender = make_sender()
    fake_twilio.chaos(Misbehaviour(drop_after_accept=1.0))
    await sender.send_due()                      # accepted, but the connection dropped before the answer
    row = await pool.fetchrow("SELECT state, attempts, attempt_started_at, last_error FROM outbox")
    assert row["state"] == "pending" and row["attempt_started_at"] is not None, dict(row)
    fake_twilio.chaos(None)
    await pool.execute("UPDATE outbox SET next_attempt_at = now()")
    await sender.send_due()
    [accepted] = fake_twilio.accepted(number(1))
    assert len(fake_twilio.requests) == 1         # one create call; the retry was a look-up
    done = await pool.fetchrow("SELECT o.state, o.attempt_started_at, m.provider_message_id FROM outbox o "
                               "JOIN messages m ON m.id = o.message_id")
    assert (done["state"], done["attempt_started_at"], done["provider_message_id"]) == ("done", None, accepted["sid"])


async def test_a_send_accepted_just_before_its_sender_was_killed_is_not_sent_again(pool, clean, make_sender,
                                                                                    fake_twilio, settings):
    await seed(pool, 1, 2)
    victim, survivor = make_sender(name="victim"), make_sender(name="survivor", outbox_orphan_after=3)
    [row] = await victim.claim(5)
    assert await store.mark_attempts(pool, [(row["id"], row["claim_token"])]) == {row["id"]}
    await victim.senders[next(iter(victim.senders))].send(build_outgoing(settings, row))   # then: SIGKILL
    await pool.execute("UPDATE outbox_senders SET heartbeat_at = now() - interval '5 seconds' WHERE name = 'victim'")
    # its call might still be running (a slow sender, not a dead one) until it would have timed out
    assert await survivor.release_expired_leases() == 0
    await pool.execute("UPDATE outbox SET attempt_started_at = now() - make_interval(secs => $1) WHERE id = $2",
                       survivor.lease + 1, row["id"])
    assert await survivor.release_expired_leases() == 1
    assert await survivor.send_due() == 2
    assert [m["body"] for m in fake_twilio.accepted()] == ["c1-1", "c1-2"]
    assert await pool.fetchval("SELECT array_agg(state ORDER BY id) FROM outbox") == ["done", "done"]


async def test_an_attempt_that_never_reached_the_provider_is_simply_sent(pool, clean, make_sender, fake_twilio):
    await seed(pool, 1, 1)
    victim, survivor = make_sender(name="victim"), make_sender(name="survivor")
    await victim.claim(5)                          # claimed, killed before the attempt mark
    await pool.execute("UPDATE outbox SET locked_until = now() - interval '1 second'")
    assert await survivor.release_expired_leases() == 1
    await survivor.send_due()
    assert len(fake_twilio.requests) == 1          # no look-up needed: nothing was attempted
    assert len(fake_twilio.accepted()) == 1


async def test_a_look_up_never_takes_another_message_with_the_same_text(pool, clean, make_sender, fake_twilio):
    """A bot may say the same thing twice: the first one's sid must not stand in for the second."""
    await seed(pool, 1, 2)
    await pool.execute("UPDATE messages SET body = 'Sorry, I did not get that.'")
    sender = make_sender()
    await pool.execute("UPDATE outbox SET next_attempt_at = now() + interval '1 hour' WHERE id = 2")
    await sender.send_due()                    # the first is accepted and recorded
    fake_twilio.chaos(Misbehaviour(drop=1.0))  # the second's connection drops before anything is stored
    await pool.execute("UPDATE outbox SET next_attempt_at = now()")
    await sender.send_due()
    fake_twilio.chaos(None)
    assert await pool.fetchval("SELECT attempt_started_at IS NOT NULL FROM outbox WHERE state = 'pending'")
    await pool.execute("UPDATE outbox SET next_attempt_at = now()")
    await sender.send_due()
    ids = await pool.fetch("SELECT m.provider_message_id FROM outbox o JOIN messages m ON m.id = o.message_id "
                           "WHERE o.state = 'done' ORDER BY o.id")
    assert len(fake_twilio.accepted()) == 2 and len({r["provider_message_id"] for r in ids}) == 2
