"""Scenario 1, ingest: signed Twilio inbound webhooks, the gateway's full pipeline vs the naive app.

Both answer on their own port with one process each; the same load generator (its own process)
drives both at each concurrency in turn. Afterwards every acknowledged message is looked up in
PostgreSQL. Then the gateway alone gets an open-loop load at the naive app's peak rate, for the
latency target.
"""
from __future__ import annotations

import asyncio

import asyncpg

from gateway.devtools.bench.harness import (BENCH_TOKEN, Bench, CpuMeter, figure, load, message_sid, new_run_id, phone,
                                            r, signed_sms, verdict)

TARGET_RATIO = 1.5
TARGET_P99_MS = 50.0


def twilio_requests(url: str, n: int, run_id: str, repeat_share: float = 0.2) -> tuple[list, list[str]]:
    """n signed inbound webhooks: distinct customers, plus a share from a few repeat customers."""
    reqs, sids = [], []
    repeaters = max(1, n // 50)
    for i in range(n):
        customer = (i % repeaters) if (i % int(1 / repeat_share) == 0) else 100_000 + i
        sid = message_sid(run_id, i)
        reqs.append(signed_sms(url, sid=sid, sender=phone(415, customer), body=f"bench message {i} café"))
        sids.append(sid)
    return reqs, sids


async def count_stored(dsn: str, sql: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, ids)
    finally:
        await conn.close()


STORED_SQL = {
    "naive": "SELECT count(*) FROM naive_messages WHERE sid = ANY($1::text[])",
    "gateway": "SELECT count(*) FROM messages WHERE direction = 'in' AND provider_message_id = ANY($1::text[])",
}


def run(b: Bench) -> dict:
    naive_port, naive_proc = _start_naive(b)
    api, gw_port = b.start_gateway("api", GATEWAY_DEFAULT_HANDLER="agent")
    b.profile("api", api.pid)
    b.profile("naive", naive_proc.pid)
    n = b.sizes.ingest_requests
    rows, charts = [], {}
    for concurrency in b.sizes.ingest_concurrency:
        run_id = new_run_id()
        for name, port, proc in (("naive", naive_port, naive_proc), ("gateway", gw_port, api)):
            url = f"http://127.0.0.1:{port}/webhooks/twilio/inbound"
            reqs, sids = twilio_requests(url, n, f"{name[0]}{run_id}")
            meter = CpuMeter(b, {"http": proc.pid}, redis=name == "gateway")
            meter.start()
            res = load({"url": url, "requests": reqs, "concurrency": concurrency})
            cpu = meter.stop(res["ok"])
            acked = [sids[i] for i in res["acked"]]
            stored = asyncio.run(count_stored(b.dsn, STORED_SQL[name], acked))
            rows.append({"target": name, "concurrency": concurrency, "acked": res["ok"],
                         "errors": res["errors"], "per_s": round(res["throughput"], 1),
                         "p50_ms": r(res["p50"]), "p95_ms": r(res["p95"]), "p99_ms": r(res["p99"]),
                         "cpu_ms_per_ack": cpu["cpu_ms"], "postgres_xacts_per_ack": cpu["per_unit"]["postgres_transactions"],
                         "acked_and_stored": stored == len(acked), "stored": stored})
            charts.setdefault("cdf", {})[f"{name} c={concurrency}"] = res["cdf"]
            charts.setdefault("timeline", {})[f"{name} c={concurrency}"] = res["timeline"]
    best = {t: max(row["per_s"] for row in rows if row["target"] == t) for t in ("naive", "gateway")}
    peak_rows = {t: max((row for row in rows if row["target"] == t), key=lambda row: row["per_s"])
                 for t in ("naive", "gateway")}
    # latency of the full pipeline at the baseline's peak rate (open loop)
    url = f"http://127.0.0.1:{gw_port}/webhooks/twilio/inbound"
    reqs, sids = twilio_requests(url, int(min(n, best["naive"] * 5)) or 100, "r" + new_run_id())
    at_rate = load({"url": url, "requests": reqs, "concurrency": 512, "rate": best["naive"]})
    charts["cdf"][f"gateway at {round(best['naive'])}/s open loop"] = at_rate["cdf"]
    acked = [sids[i] for i in at_rate["acked"]]
    at_rate_stored = asyncio.run(count_stored(b.dsn, STORED_SQL["gateway"], acked)) == len(acked)
    b.stop_all()
    ratio = round(best["gateway"] / best["naive"], 2) if best["naive"] else None
    stored_all = all(row["acked_and_stored"] for row in rows) and at_rate_stored
    p99 = at_rate["p99"]
    cpu = {t: peak_rows[t]["cpu_ms_per_ack"] for t in peak_rows}
    figures = [
        figure("ingest peak, full pipeline vs naive app (same run)",
               f"{best['gateway']}/s vs {best['naive']}/s = {ratio}x", f">= {TARGET_RATIO}x naive",
               ratio is not None and ratio >= TARGET_RATIO),
        figure(f"ingest p99 at the naive peak rate ({round(best['naive'])}/s, open loop)", f"{r(p99)} ms",
               f"< {TARGET_P99_MS:g} ms", p99 is not None and p99 < TARGET_P99_MS),
        figure("every acknowledged webhook stored in PostgreSQL", str(stored_all), "True", stored_all),
        *(figure(f"CPU per acknowledged webhook, {t} (at its peak, c={peak_rows[t]['concurrency']})",
                 ", ".join(f"{k} {v} ms" for k, v in cpu[t].items()), "reported (lower is better)", None)
          for t in ("naive", "gateway")),
    ]
    return {
        "rows": rows, "peak_per_s": best, "ratio": ratio, "cpu_ms_per_ack_at_peak": cpu, "figures": figures,
        "charts": [{"title": "ingest latency by percentile (closed loop)", "kind": "cdf", "unit": "ms",
                    "series": charts["cdf"]},
                   {"title": "acknowledged webhooks per second", "kind": "timeline", "unit": "acked/s",
                    "bucket_s": 0.5, "series": charts["timeline"]}],
        "at_baseline_peak_rate": {"rate": round(best["naive"], 1), "p50_ms": r(at_rate["p50"]),
                                  "p99_ms": r(p99), "acked": at_rate["ok"], "errors": at_rate["errors"]},
        "every_acked_message_stored": stored_all,
        "processes": "gateway: 1 `gateway api`; naive: 1 aiohttp process; load generator: 1 process",
        "summary": {
            "measured": f"{best['gateway']}/s acked (naive {best['naive']}/s); p99 {r(p99)} ms at "
                        f"{round(best['naive'])}/s; every acked message stored: {stored_all}",
            "target": f">= {TARGET_RATIO}x naive; p99 < {TARGET_P99_MS:g} ms at the naive peak rate",
            "ratio": ratio,
            "verdict": verdict(stored_all and ratio is not None and ratio >= TARGET_RATIO
                               and p99 is not None and p99 < TARGET_P99_MS),
        },
    }


def _start_naive(b: Bench):
    from gateway.devtools.testing import free_port

    port = free_port()
    proc = b.start(["gateway.devtools.bench.naive", "--port", str(port), "--dsn", b.dsn, "--token", BENCH_TOKEN],
                   b.env(), f"http://127.0.0.1:{port}/healthz")
    return port, proc


def show(res: dict) -> None:
    print("\n== Ingest: signed Twilio webhooks, acknowledged/s (each figure measured in this run)")
    print(f"{'target':<9}{'conc':>6}{'acked':>8}{'per s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'CPU ms/ack':>12}  stored?")
    for row in res["rows"]:
        print(f"{row['target']:<9}{row['concurrency']:>6}{row['acked']:>8}{row['per_s']:>10}{row['p50_ms']:>9}"
              f"{row['p95_ms']:>9}{row['p99_ms']:>9}{row['cpu_ms_per_ack']['total']:>12}"
              f"  {'all' if row['acked_and_stored'] else 'MISSING'}"
              + (f"  errors={row['errors']}" if row["errors"] else ""))
    print(f"peak: gateway {res['peak_per_s']['gateway']}/s vs naive {res['peak_per_s']['naive']}/s "
          f"= {res['ratio']}x (target >= {TARGET_RATIO}x)")
    a = res["at_baseline_peak_rate"]
    print(f"gateway at the naive peak rate ({a['rate']}/s, open loop): p50 {a['p50_ms']} ms, "
          f"p99 {a['p99_ms']} ms (target p99 < {TARGET_P99_MS:g} ms)")
    print(f"every acknowledged message stored in PostgreSQL: {res['every_acked_message_stored']}")
