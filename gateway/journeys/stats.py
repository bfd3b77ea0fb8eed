"""Journey metrics, derived by query from enrollments, sends and skips (no counters to drift).

Per journey and per step: entered, sent, delivered, read, replied, clicked, failed, converted
(attributed to the last nudge before the goal event), exited, and suppressed sends by reason.
"""
from __future__ import annotations

import asyncpg

OUTBOX_SUPPRESSIONS = ("opted_out", "no_marketing_consent", "suppressed")
SEND_COUNTS = """
    count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'read')) AS sent,
    count(*) FILTER (WHERE s.delivered_at IS NOT NULL OR m.status IN ('delivered', 'read')) AS delivered,
    count(*) FILTER (WHERE s.read_at IS NOT NULL OR m.status = 'read') AS read,
    count(*) FILTER (WHERE s.replied_at IS NOT NULL) AS replied,
    count(*) FILTER (WHERE s.clicked_at IS NOT NULL) AS clicked,
    count(*) FILTER (WHERE m.status IN ('failed', 'undelivered')) AS failed,
    count(*) AS queued"""


async def journey_stats(conn: asyncpg.Connection, journey: str) -> dict:
    totals = dict(await conn.fetchrow(
        """SELECT count(*) AS entered,
                  count(*) FILTER (WHERE status = 'active') AS active,
                  count(*) FILTER (WHERE status = 'completed') AS completed,
                  count(*) FILTER (WHERE status = 'converted') AS converted,
                  count(*) FILTER (WHERE status = 'exited') AS exited
           FROM journey_enrollments WHERE journey = $1""", journey))
    totals.update(dict(await conn.fetchrow(
        f"SELECT {SEND_COUNTS} FROM journey_sends s JOIN messages m ON m.id = s.message_id WHERE s.journey = $1",
        journey)))
    # skipped by a journey guard, or (consent changed after queueing) by the outbox at send time
    skips = await conn.fetch(
        """SELECT step, reason, count(*) AS n FROM journey_skips WHERE journey = $1 GROUP BY step, reason
           UNION ALL
           SELECT s.step, 'outbox_' || m.error_code, count(*) FROM journey_sends s
             JOIN messages m ON m.id = s.message_id
           WHERE s.journey = $1 AND m.status = 'failed' AND m.error_code = ANY($2::text[])
           GROUP BY s.step, m.error_code""", journey, list(OUTBOX_SUPPRESSIONS))
    totals["suppressed"] = _by_reason(skips)
    steps: dict[str, dict] = {}
    for r in await conn.fetch(
            f"""SELECT s.step, {SEND_COUNTS} FROM journey_sends s JOIN messages m ON m.id = s.message_id
                WHERE s.journey = $1 GROUP BY s.step""", journey):
        steps[r["step"]] = {k: v for k, v in dict(r).items() if k != "step"}
    for r in await conn.fetch(
            """SELECT attributed_step, count(*) AS n FROM journey_enrollments
               WHERE journey = $1 AND status = 'converted' AND attributed_step IS NOT NULL
               GROUP BY attributed_step""", journey):
        steps.setdefault(r["attributed_step"], {})["converted"] = r["n"]
    for r in await conn.fetch(
            """SELECT step, count(*) AS n FROM journey_enrollments
               WHERE journey = $1 AND status = 'exited' GROUP BY step""", journey):
        steps.setdefault(r["step"], {})["exited"] = r["n"]
    for step in {r["step"] for r in skips}:
        steps.setdefault(step, {})["suppressed"] = _by_reason([r for r in skips if r["step"] == step])
    for values in steps.values():
        for key in ("queued", "sent", "delivered", "read", "replied", "clicked", "failed", "converted", "exited"):
            values.setdefault(key, 0)
        values.setdefault("suppressed", {})
    variants = {r["variant"]: {"entered": r["entered"], "converted": r["converted"]} for r in await conn.fetch(
        """SELECT variant, count(*) AS entered, count(*) FILTER (WHERE status = 'converted') AS converted
           FROM journey_enrollments WHERE journey = $1 AND variant IS NOT NULL GROUP BY variant""", journey)}
    return {"journey": journey, "totals": totals, "steps": steps, "variants": variants}


async def has_enrollments(conn: asyncpg.Connection, journey: str) -> bool:
    """Whether anyone was ever enrolled in the journey (a retired journey keeps its stats)."""
    return bool(await conn.fetchval("SELECT 1 FROM journey_enrollments WHERE journey = $1 LIMIT 1", journey))


async def contact_journeys(conn: asyncpg.Connection, contact_id: int) -> list[dict]:
    """The journeys a contact is in or went through, newest first: the current step, when the next
    action is due, every message sent (step, channel, status) and every skip or postponement with
    its reason (quiet hours, cap, busy, no consent, missing attribute, filter not matched)."""
    from gateway.journeys.engine import STEP_TIMER
    from gateway.journeys.sending import FALLBACK_TIMER

    rows = await conn.fetch(
        """SELECT id, journey, version, status, step, waiting_event, variant, entered_at, exited_at, exit_reason,
                  converted_at,
                  (SELECT min(t.due_at) FROM timers t WHERE t.ref_id = e.id AND t.state = 'pending'
                     AND t.kind = ANY($2::text[])) AS next_action_at
           FROM journey_enrollments e WHERE contact_id = $1 ORDER BY entered_at DESC, id DESC
           LIMIT 50""", contact_id, [STEP_TIMER, FALLBACK_TIMER])
    ids = [r["id"] for r in rows]
    sends: dict[int, list] = {i: [] for i in ids}
    for s in await conn.fetch(
            """SELECT s.enrollment_id, s.step, s.channel, s.attempt, s.sent_at, m.status, s.delivered_at, s.read_at,
                      s.replied_at, s.clicked_at, s.message_id
               FROM journey_sends s JOIN messages m ON m.id = s.message_id
               WHERE s.enrollment_id = ANY($1::bigint[]) ORDER BY s.sent_at, s.id""", ids):
        sends[s["enrollment_id"]].append({k: v for k, v in dict(s).items() if k != "enrollment_id"})
    skips: dict[int, list] = {i: [] for i in ids}
    for s in await conn.fetch(
            """SELECT enrollment_id, step, reason, details, at FROM journey_skips
               WHERE enrollment_id = ANY($1::bigint[]) ORDER BY at, id""", ids):
        skips[s["enrollment_id"]].append({k: v for k, v in dict(s).items() if k != "enrollment_id"})
    return [{**dict(r), "sends": sends[r["id"]], "skips": skips[r["id"]]} for r in rows]


def _by_reason(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["reason"]] = out.get(r["reason"], 0) + r["n"]
    return out
