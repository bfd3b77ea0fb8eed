"""Inbox metrics over a period [since, until): first response time, resolution time, bot
containment, and volumes per channel, per agent and per team.

- first response time: escalation -> first agent reply, for episodes escalated in the period
- resolution time: episode opened -> resolved, for episodes resolved in the period
- bot containment: share of episodes opened in the period that never reached an agent
- csat: survey answers recorded in the period (count, average, distribution of 1-5), overall and
  per agent, team and channel (of the rated episode)

Both times come with a histogram (`up_to` seconds per bucket; the last bucket has no bound), so a
dashboard can draw their distribution, not only the median.
"""
from __future__ import annotations

from datetime import datetime

import asyncpg


BUCKETS = (60, 300, 900, 3600, 4 * 3600, 24 * 3600)    # 1 min, 5 min, 15 min, 1 h, 4 h, 1 day


def _seconds(value) -> float | None:
    return round(value, 3) if value is not None else None


def _histogram_sql(expr: str) -> str:
    """Columns h0..hN counting `expr` per bucket of BUCKETS (the last one: above the last edge)."""
    cols, low = [], None
    for i, edge in enumerate(BUCKETS):
        cond = f"{expr} <= {edge}" if low is None else f"{expr} > {low} AND {expr} <= {edge}"
        cols.append(f"count(*) FILTER (WHERE {cond}) AS h{i}")
        low = edge
    cols.append(f"count(*) FILTER (WHERE {expr} > {low}) AS h{len(BUCKETS)}")
    return ", ".join(cols)


def _histogram(row) -> list[dict]:
    return [{"up_to": edge, "count": row[f"h{i}"]} for i, edge in enumerate((*BUCKETS, None))]


def _stats(row) -> dict:
    return {"count": row["n"], "average": _seconds(row["avg"]), "median": _seconds(row["p50"]),
            "histogram": _histogram(row)}


async def summary(conn: asyncpg.Connection, since: datetime, until: datetime) -> dict:
    frt_s = "extract(epoch FROM first_response_at - escalated_at)"
    res_s = "extract(epoch FROM resolved_at - opened_at)"
    frt = await conn.fetchrow(
        f"""SELECT count(*) AS n, {_histogram_sql(frt_s)},
                  avg(extract(epoch FROM first_response_at - escalated_at))::float8 AS avg,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - escalated_at)::float8) AS p50
           FROM episodes WHERE escalated_at >= $1 AND escalated_at < $2 AND first_response_at IS NOT NULL""",
        since, until)
    res = await conn.fetchrow(
        f"""SELECT count(*) AS n, {_histogram_sql(res_s)}, avg(extract(epoch FROM resolved_at - opened_at))::float8 AS avg,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - opened_at)::float8) AS p50
           FROM episodes WHERE resolved_at >= $1 AND resolved_at < $2""", since, until)
    cont = await conn.fetchrow(
        """SELECT count(*) AS episodes, count(*) FILTER (WHERE escalated_at IS NULL) AS bot_only
           FROM episodes WHERE opened_at >= $1 AND opened_at < $2""", since, until)
    per_channel = await conn.fetch(
        """SELECT channel, count(*) FILTER (WHERE direction = 'in') AS inbound,
                  count(*) FILTER (WHERE direction = 'out') AS outbound
           FROM messages WHERE created_at >= $1 AND created_at < $2 AND kind = 'message'
           GROUP BY channel ORDER BY channel""", since, until)
    per_inbox = await conn.fetch(
        """SELECT m.inbox_id, x.name, x.channel, x.address, count(*) FILTER (WHERE m.direction = 'in') AS inbound,
                  count(*) FILTER (WHERE m.direction = 'out') AS outbound,
                  count(DISTINCT m.conversation_id) FILTER (WHERE m.direction = 'in') AS conversations
           FROM messages m LEFT JOIN inboxes x ON x.id = m.inbox_id
           WHERE m.created_at >= $1 AND m.created_at < $2 AND m.kind = 'message' AND m.direction IN ('in', 'out')
           GROUP BY m.inbox_id, x.name, x.channel, x.address ORDER BY m.inbox_id NULLS FIRST""", since, until)
    per_agent = await conn.fetch(
        """SELECT a.id AS agent_id, a.name,
                  (SELECT count(*) FROM messages m WHERE m.author_type = 'agent' AND m.author_id = a.id
                     AND m.direction = 'out' AND m.created_at >= $1 AND m.created_at < $2) AS replies,
                  (SELECT count(*) FROM episodes e WHERE e.resolved_by = a.id
                     AND e.resolved_at >= $1 AND e.resolved_at < $2) AS resolved
           FROM agents a ORDER BY a.id""", since, until)
    per_team = await conn.fetch(
        """SELECT c.team_id, t.name, count(*) FILTER (WHERE e.opened_at >= $1 AND e.opened_at < $2) AS episodes,
                  count(*) FILTER (WHERE e.escalated_at >= $1 AND e.escalated_at < $2) AS escalated,
                  count(*) FILTER (WHERE e.resolved_at >= $1 AND e.resolved_at < $2) AS resolved
           FROM episodes e JOIN conversations c ON c.id = e.conversation_id LEFT JOIN teams t ON t.id = c.team_id
           WHERE e.opened_at < $2 AND (e.resolved_at IS NULL OR e.resolved_at >= $1)
           GROUP BY c.team_id, t.name ORDER BY c.team_id NULLS FIRST""", since, until)
    csat = await _csat(conn, since, until)
    return {
        "since": since, "until": until,
        "csat": csat,
        "first_response_seconds": _stats(frt),
        "resolution_seconds": _stats(res),
        "bot_containment": {"episodes": cont["episodes"], "bot_only": cont["bot_only"],
                            "rate": round(cont["bot_only"] / cont["episodes"], 4) if cont["episodes"] else None},
        "per_channel": [dict(r) for r in per_channel],
        "per_inbox": [dict(r) for r in per_inbox],
        "per_agent": [dict(r) for r in per_agent],
        "per_team": [dict(r) for r in per_team],
    }


CSAT_GROUPS = {"agent": "e.csat_agent_id", "team": "e.csat_team_id", "channel": "e.channel"}


def _csat_stats(row) -> dict:
    return {"count": row["n"], "average": round(row["avg"], 3) if row["avg"] is not None else None,
            "distribution": {str(score): row[f"s{score}"] for score in range(1, 6)}}


async def _csat(conn: asyncpg.Connection, since: datetime, until: datetime) -> dict:
    """Survey answers in [since, until): overall, and per agent, team and channel."""
    scores = ", ".join(f"count(*) FILTER (WHERE e.csat_score = {i}) AS s{i}" for i in range(1, 6))

    async def grouped(key: str | None):
        select, group = (f"{key} AS key, ", f" GROUP BY {key} ORDER BY {key} NULLS FIRST") if key else ("", "")
        return await conn.fetch(
            f"""SELECT {select}count(*) AS n, avg(e.csat_score)::float8 AS avg, {scores}
                FROM episodes e WHERE e.csat_at >= $1 AND e.csat_at < $2{group}""", since, until)

    out = _csat_stats((await grouped(None))[0])
    agents = dict(await conn.fetch("SELECT id, name FROM agents"))
    teams = dict(await conn.fetch("SELECT id, name FROM teams"))
    out["per_agent"] = [{"agent_id": r["key"], "name": agents.get(r["key"]), **_csat_stats(r)}
                        for r in await grouped(CSAT_GROUPS["agent"])]
    out["per_team"] = [{"team_id": r["key"], "name": teams.get(r["key"]), **_csat_stats(r)}
                       for r in await grouped(CSAT_GROUPS["team"])]
    out["per_channel"] = [{"channel": r["key"], **_csat_stats(r)} for r in await grouped(CSAT_GROUPS["channel"])]
    return out
