"""Channel fallback after non-delivery, and exit on conversion mid-wait (manual clock)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

CART = """
name: cart
priority: 5
entry: {event: cart_abandoned, require: [cart_url]}
goal: {event: order_placed}
steps:
  - id: wait_1h
    wait: {duration: 1h}
  - id: reminder
    send: {template: cart, channels: [whatsapp, sms, email], fallback_after: 15m}
  - id: wait_2d
    wait: {duration: 2d}
  - id: last_call
    send: {template: cart, channels: [email]}
templates:
  cart:
    variables:
      name: {from: contact.name, default: there}
      cart_url: {from: event.cart_url}
    sms: "Hi {name}, your cart: {cart_url}"
    whatsapp: {text: "Hi {name}, your cart: {cart_url}", template: cart_reminder, language: en_US,
               parameters: ["{name}", "{cart_url}"]}
    email: {subject: "Your cart", text: "Hi {name}: {cart_url}", html: "<p>{cart_url}</p>"}
"""
T0 = datetime(2030, 1, 15, 10, 0, tzinfo=timezone.utc)


def contact(n: int, **extra) -> dict:
    return {"external_id": f"cust-{n}", "phone": f"+1415555{n:04d}", "email": f"c{n}@example.com",
            "name": f"Ann{n}", "timezone": "UTC", **extra}


async def test_whatsapp_not_delivered_in_15_minutes_falls_back_to_sms_then_email(journey_env):
    async with journey_env(T0, CART) as h:
        ev = await h.post_event("cart_abandoned", contact(1), {"cart_url": "https://shop.test/c/1"})
        await h.advance(minutes=59)
        assert await h.sends() == []
        await h.advance(minutes=1)
        [wa] = await h.sends()
        assert wa["channel"] == "whatsapp" and wa["message_status"] == "sent"
        # outside the 24 h window: the approved template, with rendered parameters
        assert wa["content"]["template"] == {"name": "cart_reminder", "language": "en_US",
                                             "parameters": ["Ann1", "https://shop.test/c/1"], "variables": {}}
        await h.advance(minutes=14)
        assert len(await h.sends()) == 1
        await h.advance(minutes=1)
        wa, sms = await h.sends()
        assert (wa["state"], sms["channel"], sms["attempt"], sms["body"]) == \
            ("superseded", "sms", 1, "Hi Ann1, your cart: https://shop.test/c/1")
        await h.report_status(sms["message_id"], "delivered")   # the SMS arrives: no email
        await h.advance(minutes=30)
        assert [s["channel"] for s in await h.sends()] == ["whatsapp", "sms"]
        enrollment = await h.enrollment("cart", ev["contact_id"])
        assert enrollment["status"] == "active" and enrollment["step"] == "last_call"

        stats = await h.stats("cart")
        assert stats["totals"]["entered"] == 1
        assert stats["steps"]["reminder"]["sent"] == 2 and stats["steps"]["reminder"]["delivered"] == 1


async def test_delivered_nudge_cancels_fallback_and_failure_pulls_it_forward(journey_env):
    async with journey_env(T0, CART) as h:
        await h.post_event("cart_abandoned", contact(2), {"cart_url": "u2"})
        await h.post_event("cart_abandoned", contact(3), {"cart_url": "u3"})
        await h.advance(hours=1)
        first, second = await h.sends()
        await h.report_status(first["message_id"], "delivered")
        await h.report_status(second["message_id"], "undelivered")   # fails at once: fallback now
        await h.advance(seconds=0)
        sends = await h.sends()
        assert [(s["recipient_address"], s["channel"]) for s in sends] == \
            [("+14155550002", "whatsapp"), ("+14155550003", "whatsapp"), ("+14155550003", "sms")]
        await h.advance(minutes=20)   # the SMS was not confirmed either: email; contact 2 got nothing more
        assert [(s["recipient_address"], s["channel"]) for s in await h.sends()][2:] == \
            [("+14155550003", "sms"), ("c3@example.com", "email")]
        assert await h.pool.fetchval(
            "SELECT count(*) FROM timers WHERE kind = 'journey_fallback' AND state = 'pending'") == 0


async def test_goal_event_mid_wait_exits_at_once_and_cancels_pending_steps(journey_env):
    async with journey_env(T0, CART) as h:
        early = await h.post_event("cart_abandoned", contact(4), {"cart_url": "u4"})
        late = await h.post_event("cart_abandoned", contact(5), {"cart_url": "u5"})
        await h.advance(minutes=30)
        await h.post_event("order_placed", contact(4), {"order_id": "o-4"})     # converts mid-wait
        enr = await h.enrollment("cart", early["contact_id"])
        assert (enr["status"], enr["exit_reason"], enr["attributed_step"]) == \
            ("converted", "goal:order_placed", None)
        assert await h.pool.fetchval(
            "SELECT count(*) FROM timers WHERE ref_id = $1 AND kind LIKE 'journey_%' AND state = 'pending'",
            enr["id"]) == 0
        await h.advance(minutes=30)
        [reminder] = await h.sends()
        assert reminder["recipient_address"] == "+14155550005"
        await h.report_status(reminder["message_id"], "delivered")
        await h.advance(hours=3)
        await h.post_event("order_placed", contact(5), {"order_id": "o-5"})     # converts mid-wait_2d
        await h.advance(days=3)
        assert len(await h.sends()) == 1                                          # no last_call
        enr = await h.enrollment("cart", late["contact_id"])
        assert (enr["status"], enr["attributed_step"]) == ("converted", "reminder")
        stats = await h.stats("cart")
        assert stats["totals"]["converted"] == 2 and stats["steps"]["reminder"]["converted"] == 1
        history = await h.pool.fetch(
            """SELECT content->>'event' AS event FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE c.contact_id = $1 AND m.kind = 'event' ORDER BY m.seq""", early["contact_id"])
        assert [r["event"] for r in history] == ["business_event", "business_event", "journey_converted"]


async def test_conversion_withdraws_a_queued_nudge_the_outbox_has_not_sent(journey_env):
    async with journey_env(T0, CART) as h:
        ev = await h.post_event("cart_abandoned", contact(6), {"cart_url": "u6"})
        h.clock.advance(timedelta(hours=1))
        await h.fire()                                   # queued, not yet sent
        await h.post_event("order_placed", contact(6), {"order_id": "o-6"})
        await h.send()
        [send] = await h.sends()
        assert send["message_status"] == "failed"
        assert await h.pool.fetchval("SELECT state FROM outbox WHERE message_id = $1", send["message_id"]) == "skipped"
        assert (await h.enrollment("cart", ev["contact_id"]))["status"] == "converted"
