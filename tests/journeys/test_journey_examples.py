"""The shipped journeys (flows/journeys) run end to end on a manual clock."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

UTC = timezone.utc
SHIPPED = Path(__file__).resolve().parents[2] / "flows" / "journeys"


async def test_onboarding_welcomes_now_and_sends_tips_at_ten_local_the_next_morning(journey_env):
    # 2030-01-15 15:00 UTC is 16:00 in Madrid
    async with journey_env(datetime(2030, 1, 15, 15, 0, tzinfo=UTC), policy=None, copy_from=SHIPPED) as h:
        ev = await h.post_event("signed_up", {"email": "nuevo@example.com", "name": "Lucía", "locale": "es",
                                              "timezone": "Europe/Madrid",
                                              "attributes": {"plan": "trial", "product_name": "Acme"}})
        await h.advance(seconds=0)
        [welcome] = await h.sends()
        assert welcome["channel"] == "email"     # no phone: WhatsApp and SMS are skipped
        assert welcome["content"]["subject"] == "Bienvenido a Acme"
        await h.advance(hours=17)                # 09:00 Madrid
        assert len(await h.sends()) == 1
        await h.advance(hours=1)                 # 10:00 Madrid
        tips = (await h.sends())[1]
        assert (tips["step"], tips["sent_at"]) == ("tips", datetime(2030, 1, 16, 9, 0, tzinfo=UTC))
        attrs = await h.pool.fetchval("SELECT attributes FROM contacts WHERE id = $1", ev["contact_id"])
        assert attrs["onboarding_tips_sent"] is True
        await h.advance(days=3)                  # trial, no reply: handed to the support bot
        conv = await h.pool.fetchrow("SELECT flow_name, flow_state FROM conversations WHERE contact_id = $1",
                                     ev["contact_id"])
        assert (conv["flow_name"], conv["flow_state"]) == ("support", "start")
        assert (await h.enrollment("onboarding", ev["contact_id"]))["status"] == "completed"


async def test_cart_recovery_nudges_the_treated_group_and_holds_out_the_rest(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), policy=None, copy_from=SHIPPED) as h:
        for n in range(30):
            await h.post_event("cart_abandoned", {"phone": f"+3461234{n:04d}", "name": f"C{n}"},
                               {"cart_url": f"https://shop.test/c/{n}", "cart_value": 40})
        await h.advance(seconds=0)
        await h.advance(hours=1)
        variants = dict(await h.pool.fetch("SELECT variant, count(*) FROM journey_enrollments GROUP BY variant"))
        assert set(variants) == {"nudged", "holdout"} and variants["nudged"] > variants["holdout"]
        sends = await h.sends()
        assert len(sends) == variants["nudged"] and {s["channel"] for s in sends} == {"whatsapp"}
        assert sends[0]["content"]["template"]["name"] == "cart_reminder"
        holdout_contact = await h.pool.fetchval(
            "SELECT contact_id FROM journey_enrollments WHERE variant = 'holdout' LIMIT 1")
        await h.post_event("order_placed", {"contact_id": holdout_contact}, {"order_id": "o1"})
        stats = await h.stats("cart_recovery")
        assert stats["variants"]["holdout"]["converted"] == 1
        assert stats["totals"]["entered"] == 30
