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

from datetime import date, datetime, time, timedelta, timezone

import asyncpg

from gateway.inbox import rollups

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


async def summary_from_raw(conn: asyncpg.Connection, since: datetime, until: datetime) -> dict:
    """The summary computed from the raw rows only: the definition `summary` must match."""
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


# -- the summary from the daily rollups (gateway/inbox/rollups.py) plus the raw rows of the rest -----
#
# A period is split into the longest run of whole UTC days [a, b) that are rolled up and unmarked, read
# from the rollup tables, and the raw intervals around it ([since, a) and [b, until), usually a part of
# a day at each end and today), read from the raw rows; every figure adds the two. Distinct
# conversations per inbox: the run's from rollup_inbox_reach (the rows of its days first seen since
# a), plus the raw intervals' conversations that have no inbound day in the run. Teams appear, as in
# the raw computation, when one of their episodes overlaps the period: with an event in it (episodes
# are opened, escalated and resolved in that order), else found by a look-up of the raw rows.

RAW = "unnest($1::timestamptz[], $2::timestamptz[]) AS r(lo, hi)"
RUN = "day >= $3 AND day < $4"


def _weighted_histogram_sql(expr: str) -> str:
    return _histogram_sql(expr).replace("count(*) FILTER", "sum(n) FILTER")


async def _plan(conn: asyncpg.Connection, since: datetime, until: datetime) -> tuple:
    """(raw lows, raw highs, a, b): the run of rolled-up days [a, b) and the raw intervals around it."""
    since_utc, until_utc = since.astimezone(timezone.utc), until.astimezone(timezone.utc)
    first = since_utc.date() + (timedelta(days=0) if since_utc.timetz() == time(tzinfo=timezone.utc)
                                else timedelta(days=1))
    last = until_utc.date()
    days = [r[0] for r in await conn.fetch(
        """SELECT d.day FROM rollup_days d WHERE d.day >= $1 AND d.day < $2
               AND NOT EXISTS (SELECT 1 FROM rollup_dirty x WHERE x.day = d.day) ORDER BY d.day""", first, last)]
    runs: list[list[date]] = []
    for day in days:
        if runs and day == runs[-1][1]:
            runs[-1][1] = day + timedelta(days=1)
        else:
            runs.append([day, day + timedelta(days=1)])
    a, b = max(runs, key=lambda run: run[1] - run[0]) if runs else (None, None)
    if a is None:
        return [since], [until], first, first
    intervals = [(lo, hi) for lo, hi in ((since, rollups.day_start(a)), (rollups.day_start(b), until)) if lo < hi]
    return [lo for lo, _ in intervals], [hi for _, hi in intervals], a, b


async def _durations(conn: asyncpg.Connection, plan: tuple, metric: str, at: str, expr: str, where: str) -> dict:
    row = await conn.fetchrow(
        f"""WITH v AS MATERIALIZED (
                SELECT seconds AS s, n FROM rollup_durations WHERE metric = '{metric}' AND {RUN}
                UNION ALL
                SELECT {expr}, 1 FROM {RAW} JOIN episodes e ON e.{at} >= r.lo AND e.{at} < r.hi {where}),
            w AS (SELECT s::float8 AS x, sum(n) AS n FROM v GROUP BY 1),
            c AS (SELECT x, n, sum(n) OVER (ORDER BY x) AS cum, sum(n) OVER () AS total FROM w)
            SELECT coalesce(sum(n), 0)::int8 AS n, {_weighted_histogram_sql("s")},
                   (sum(s * n) / sum(n))::float8 AS avg,
                   (SELECT array_agg(x ORDER BY x) FROM c
                    WHERE cum > floor((total - 1) * 0.5) AND cum - n <= ceil((total - 1) * 0.5)) AS middle
            FROM v""", *plan)
    out = dict(row)
    for i in range(len(BUCKETS) + 1):
        out[f"h{i}"] = int(out[f"h{i}"] or 0)
    middle = out.pop("middle")
    if not middle:
        out["p50"] = None
    else:       # percentile_cont(0.5): the middle value, or halfway between the two middle ones
        lo, hi = middle[0], middle[-1]
        out["p50"] = lo if out["n"] % 2 else lo + 0.5 * (hi - lo)
    return out


async def summary(conn: asyncpg.Connection, since: datetime, until: datetime) -> dict:
    """The same figures as `summary_from_raw`, from the daily rollups and the raw rows of the rest."""
    plan = await _plan(conn, since, until)
    frt = await _durations(conn, plan, "first_response", "escalated_at",
                           "extract(epoch FROM e.first_response_at - e.escalated_at)",
                           "WHERE e.first_response_at IS NOT NULL")
    res = await _durations(conn, plan, "resolution", "resolved_at", "extract(epoch FROM e.resolved_at - e.opened_at)", "")

    def raw_episodes(at: str, cols: str) -> str:
        return (f"SELECT c.team_id, {cols} FROM {RAW} JOIN episodes e ON e.{at} >= r.lo AND e.{at} < r.hi "
                "JOIN conversations c ON c.id = e.conversation_id")
    teams = [dict(r) for r in await conn.fetch(
        f"""WITH t AS (
                SELECT nullif(team_id, 0) AS team_id, opened, bot_only, escalated, resolved FROM rollup_episodes WHERE {RUN}
                UNION ALL {raw_episodes("opened_at", "1, (e.escalated_at IS NULL)::int, 0, 0")}
                UNION ALL {raw_episodes("escalated_at", "0, 0, 1, 0")}
                UNION ALL {raw_episodes("resolved_at", "0, 0, 0, 1")})
            SELECT t.team_id, tm.name, sum(opened)::int8 AS episodes, sum(escalated)::int8 AS escalated,
                   sum(resolved)::int8 AS resolved, sum(bot_only)::int8 AS bot_only
            FROM t LEFT JOIN teams tm ON tm.id = t.team_id GROUP BY t.team_id, tm.name""", *plan)]
    opened, bot_only = sum(t["episodes"] for t in teams), sum(t.pop("bot_only") for t in teams)
    present = {t["team_id"] for t in teams}
    for team in [None, *(r[0] for r in await conn.fetch("SELECT id FROM teams ORDER BY id"))]:
        if team in present:
            continue
        which = "c.team_id IS NULL" if team is None else "c.team_id = $3"
        overlaps = await conn.fetchval(
            f"""SELECT EXISTS (SELECT 1 FROM episodes e JOIN conversations c ON c.id = e.conversation_id
                               WHERE {which} AND e.opened_at < $2 AND (e.resolved_at IS NULL OR e.resolved_at >= $1))""",
            since, until, *(() if team is None else (team,)))
        if overlaps:
            name = None if team is None else await conn.fetchval("SELECT name FROM teams WHERE id = $1", team)
            teams.append({"team_id": team, "name": name, "episodes": 0, "escalated": 0, "resolved": 0})
    teams.sort(key=lambda t: (t["team_id"] is not None, t["team_id"] or 0))

    volumes = await conn.fetch(
        f"""WITH t AS (
                SELECT channel, inbox_id, inbound, outbound FROM rollup_messages WHERE {RUN}
                UNION ALL
                SELECT m.channel, coalesce(m.inbox_id, 0), count(*) FILTER (WHERE m.direction = 'in'),
                       count(*) FILTER (WHERE m.direction = 'out')
                FROM {RAW} JOIN messages m ON m.created_at >= r.lo AND m.created_at < r.hi
                WHERE m.kind = 'message' GROUP BY 1, 2)
            SELECT channel, inbox_id, sum(inbound)::int8 AS inbound, sum(outbound)::int8 AS outbound
            FROM t GROUP BY channel, inbox_id ORDER BY channel, inbox_id""", *plan)
    per_channel: dict[str, dict] = {}
    inboxes: dict[int, dict] = {}
    for v in volumes:
        ch = per_channel.setdefault(v["channel"], {"channel": v["channel"], "inbound": 0, "outbound": 0})
        ch["inbound"] += v["inbound"]
        ch["outbound"] += v["outbound"]
        if v["inbound"] or v["outbound"]:
            ib = inboxes.setdefault(v["inbox_id"], {"inbound": 0, "outbound": 0})
            ib["inbound"] += v["inbound"]
            ib["outbound"] += v["outbound"]
    reach = dict(await conn.fetch(
        f"""SELECT inbox_id, sum(n)::int8 FROM (
                SELECT inbox_id, n FROM rollup_inbox_reach WHERE {RUN} AND prev_day < $3
                UNION ALL
                SELECT p.inbox_id, count(*) FROM (
                    SELECT DISTINCT coalesce(m.inbox_id, 0) AS inbox_id, m.conversation_id
                    FROM {RAW} JOIN messages m ON m.created_at >= r.lo AND m.created_at < r.hi
                    WHERE m.kind = 'message' AND m.direction = 'in') p
                WHERE NOT EXISTS (SELECT 1 FROM rollup_inbox_conversations x
                                  WHERE x.conversation_id = p.conversation_id AND x.inbox_id = p.inbox_id
                                    AND x.day >= $3 AND x.day < $4)
                GROUP BY p.inbox_id) t GROUP BY inbox_id""", *plan))
    described = {r["id"]: r for r in await conn.fetch(
        "SELECT id, name, channel, address FROM inboxes WHERE id = ANY($1::bigint[])", list(inboxes))}
    per_inbox = []
    for key in sorted(inboxes):
        x = described.get(key)
        per_inbox.append({"inbox_id": key or None, "name": x and x["name"], "channel": x and x["channel"],
                          "address": x and x["address"], **inboxes[key], "conversations": reach.get(key, 0)})
    per_agent = await conn.fetch(
        f"""SELECT a.id AS agent_id, a.name, coalesce(x.replies, 0)::int8 AS replies,
                   coalesce(x.resolved, 0)::int8 AS resolved
            FROM agents a LEFT JOIN (
                SELECT agent_id, sum(replies) AS replies, sum(resolved) AS resolved FROM (
                    SELECT agent_id, replies, resolved FROM rollup_agents WHERE {RUN}
                    UNION ALL
                    SELECT m.author_id, count(*), 0 FROM {RAW} JOIN messages m ON m.created_at >= r.lo AND m.created_at < r.hi
                    WHERE m.author_type = 'agent' AND m.direction = 'out' GROUP BY m.author_id
                    UNION ALL
                    SELECT e.resolved_by, 0, count(*) FROM {RAW} JOIN episodes e ON e.resolved_at >= r.lo AND e.resolved_at < r.hi
                    GROUP BY e.resolved_by) t
                GROUP BY agent_id) x ON x.agent_id = a.id
            ORDER BY a.id""", *plan)
    return {
        "since": since, "until": until,
        "csat": await _csat(conn, since, until),
        "first_response_seconds": _stats(frt),
        "resolution_seconds": _stats(res),
        "bot_containment": {"episodes": opened, "bot_only": bot_only,
                            "rate": round(bot_only / opened, 4) if opened else None},
        "per_channel": list(per_channel.values()),
        "per_inbox": per_inbox,
        "per_agent": [dict(r) for r in per_agent],
        "per_team": teams,
    }
