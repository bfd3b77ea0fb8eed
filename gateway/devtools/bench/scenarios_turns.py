"""Scenario 2, turns: inbound SMS -> flow -> bot reply accepted by the fake provider.

One `gateway api` and one `gateway worker` (the default support flow) with Twilio pointed at the
fake Twilio process. The load generator sends signed "hi" webhooks from distinct customers (each
one a first turn: the bot greets with its menu) at a fixed open-loop rate and notes when each was
sent; the fake notes when each reply arrived. A turn's latency is reply-received minus
webhook-sent, matched by the customer's number (unique per turn in this run).
"""
from __future__ import annotations

import asyncio
import subprocess
import time

from gateway.devtools.bench.harness import (Bench, CpuMeter, Progress, connect_pool, figure, get_json, load, message_sid,
                                            new_run_id, pcts, phone, r, signed_sms, verdict)
from gateway.devtools.bench.loadgen import cdf, percentile, timeline

TARGET_P99_MS = 100.0
TARGET_RATE = 500
TODAY_CPU_MS = 12.0


def start_api(b: Bench) -> tuple[str, dict, subprocess.Popen, str]:
    """The fake Twilio and one `gateway api` on the support flow replying through it: (the fake's
    URL, the settings a worker of the same run takes, the api process, its inbound webhook URL)."""
    fake = b.start_fake_twilio()
    common = {"GATEWAY_DEFAULT_HANDLER": "flow", "GATEWAY_TWILIO_API_BASE": fake}
    api, api_port = b.start_gateway("api", **common)
    return fake, common, api, f"http://127.0.0.1:{api_port}/webhooks/twilio/inbound"


def run(b: Bench) -> dict:
    fake, common, api, url = start_api(b)
    worker, _ = b.start_gateway("worker", **common)
    b.profile("api", api.pid)
    b.profile("worker", worker.pid)
    rate = b.sizes.turns_rate
    warm = _drive(fake, url, block=628, n=max(20, int(rate)), rate=min(rate, 100))   # flows loaded, pools warm
    n = int(rate * b.sizes.turns_seconds)
    meter = CpuMeter(b, {"api": api.pid, "worker": worker.pid})
    meter.start()
    res = _drive(fake, url, block=650, n=n, rate=rate, wait=max(30.0, b.sizes.turns_seconds * 1.5))
    cpu = meter.stop(res["replied"])
    stages = asyncio.run(_stages(b.dsn, res.pop("sent_at"), res.pop("arrived"), phone(650, 0)[:5]))
    sweep = _sweep(fake, url, rate, b.sizes.turns_seconds)
    b.stop_all()
    p99 = res["latency"]["p99_ms"]
    ok = res["replied"] == n and p99 is not None and p99 < TARGET_P99_MS and res["offered_per_s"] >= 0.95 * rate
    ms = cpu["cpu_ms"]
    figures = [
        figure(f"turns: end-to-end p99 at {rate:g}/s offered for {b.sizes.turns_seconds:g} s",
               f"{p99} ms (p50 {res['latency']['p50_ms']} ms), {res['replied']}/{n} replied, "
               f"{res['turns_per_s']} turns/s", f"p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE}/s, every one answered",
               ok and rate >= TARGET_RATE),
        figure("turns below the target's rate: end-to-end p50 / p99 by offered rate",
               "; ".join(f"{x['rate']:g}/s: {x['latency']['p50_ms']} / {x['latency']['p99_ms']} ms, "
                         f"{x['replied']}/{x['offered']} replied" for x in sweep),
               "where the p99 passes 100 ms: what one api + one worker sustain beside the load here", None),
        figure(f"where a turn's time goes at {rate:g}/s (p50 / p90 / p99, each stage on its own)",
               "; ".join(f"{name} {v['p50_ms']} / {v['p90_ms']} / {v['p99_ms']} ms" for name, v in stages.items()),
               "reported: which stage the latency is spent in", None),
        figure("CPU per turn (from each process's own counters)",
               ", ".join(f"{k} {v} ms" for k, v in ms.items()) +
               f"; per turn {cpu['per_unit']['postgres_transactions']} PostgreSQL transactions, "
               f"{cpu['per_unit']['redis_commands']} Redis commands",
               f"drive down (about {TODAY_CPU_MS:g} ms in total before issue 13)", None),
    ]
    return {**res, "warmup_replied": warm["replied"], "cpu_ms_per_turn": ms, "per_turn": cpu["per_unit"],
            "stages": stages,
            "figures": figures,
            "charts": [{"title": "turn latency by percentile (webhook sent -> reply at the fake)", "kind": "cdf",
                        "unit": "ms", "series": {"turns": res.pop("cdf")}},
                       {"title": "turns per second (replies received by the fake)", "kind": "timeline",
                        "unit": "turns/s", "bucket_s": 0.5,
                        "series": {"webhooks acked": res.pop("acked_timeline"), "replies": res.pop("timeline")}},
                       {"title": "turn latency by percentile at lower offered rates", "kind": "cdf", "unit": "ms",
                        "series": {f"{x['rate']:g}/s": x.pop("cdf") for x in sweep}}],
            "sweep": [{k: v for k, v in x.items() if k in ("rate", "offered", "replied", "turns_per_s", "latency")}
                      for x in sweep],
            "processes": "1 `gateway api` + 1 `gateway worker` (flow handler) + fake Twilio + load generator",
            "summary": {
                "measured": f"{res['turns_per_s']} turns/s at {rate:g}/s offered; end-to-end p50 "
                            f"{res['latency']['p50_ms']} ms, p99 {p99} ms; {res['replied']}/{n} replied",
                "target": f"p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE} turns/s",
                "ratio": None, "verdict": verdict(ok and rate >= TARGET_RATE)}}


SWEEP = ((0.2, 660), (0.4, 661), (0.6, 662), (0.8, 678))   # (share of the target's rate, number block)


# Each turn's timestamps in the database: its webhook's ingest transaction began (the inbound row's
# created_at), its round began (processed_at), its reply's send finished (status_updated_at).
STAGES_SQL = """SELECT DISTINCT ON (i.id) i.sender_address AS customer, extract(epoch FROM i.created_at) AS stored,
                       extract(epoch FROM i.processed_at) AS round_began, extract(epoch FROM o.status_updated_at) AS finished
                FROM messages i JOIN messages o ON o.conversation_id = i.conversation_id AND o.direction = 'out'
                     AND o.kind = 'message'
                WHERE i.direction = 'in' AND i.sender_address LIKE $1 || '%' ORDER BY i.id, o.seq"""


async def _stages(dsn: str, sent_at: dict[str, float], arrived: dict[str, float], prefix: str) -> dict:
    """Where each turn's time went, stage by stage (clocks of one machine: the load generator's send,
    PostgreSQL's now(), the fake provider's receipt): webhook sent -> its ingest transaction began ->
    its round began -> the provider had the reply -> the send was finished."""
    pool = await connect_pool(dsn)
    try:
        rows = await pool.fetch(STAGES_SQL, prefix)
    finally:
        await pool.close()
    spans: dict[str, list[float]] = {"webhook -> ingest": [], "ingest -> round": [], "round -> provider": [],
                                     "provider -> finished": []}
    for row in rows:
        sent, got = sent_at.get(row["customer"]), arrived.get(row["customer"])
        if sent is None or got is None or row["round_began"] is None or row["finished"] is None:
            continue
        stored, began, finished = float(row["stored"]), float(row["round_began"]), float(row["finished"])
        for name, span in (("webhook -> ingest", stored - sent), ("ingest -> round", began - stored),
                           ("round -> provider", got - began), ("provider -> finished", finished - got)):
            spans[name].append(span * 1000)
    return {name: {f"p{q}_ms": r(percentile(v, q)) for q in (50, 90, 99)} for name, v in spans.items()}


def _sweep(fake: str, url: str, rate: float, seconds: float) -> list[dict]:
    """The same turns at lower open-loop rates, after the main run's backlog is answered: where
    the latency leaves the target shows the capacity beside the load generator on this machine."""
    out = []
    for share, block in SWEEP:
        at = rate * share
        res = _drive(fake, url, block=block, n=max(10, int(at * seconds / 4)), rate=at, wait=30.0)
        res.pop("sent_at"), res.pop("arrived")
        out.append({"rate": at, **res})
    return out


def _drive(fake: str, url: str, *, block: int, n: int, rate: float, wait: float = 60.0) -> dict:
    run_id = new_run_id()
    numbers = [phone(block, i) for i in range(n)]
    reqs = [signed_sms(url, sid=message_sid("t" + run_id, i), sender=numbers[i], body="hi") for i in range(n)]
    start_count = get_json(f"{fake}/_stats?since=0&limit=0")["count"]
    res = load({"url": url, "requests": reqs, "concurrency": 1024, "rate": rate, "timestamps": True})
    sent_at = {numbers[i]: res["sent_at"][i] for i in res["acked"]}
    replies: dict[str, float] = {}
    deadline = time.monotonic() + wait
    seen = start_count
    progress = Progress("replies received", len(sent_at))
    while time.monotonic() < deadline:
        progress.update(len(replies))
        stats = get_json(f"{fake}/_stats?since={seen}")
        seen += len(stats["received"])
        for arrived, to, _body in stats["received"]:
            if to in sent_at and to not in replies:
                replies[to] = arrived
        if len(replies) >= len(sent_at):
            break
        time.sleep(0.5)
    latencies = [(replies[to] - sent_at[to]) * 1000 for to in replies]
    first_sent = min(sent_at.values()) if sent_at else 0
    last_reply = max(replies.values()) if replies else first_sent
    return {"offered": n, "offered_per_s": r(n / res["elapsed"], 1) if res["elapsed"] else None,
            "acked": res["ok"], "errors": res["errors"], "replied": len(replies),
            "turns_per_s": r(len(replies) / (last_reply - first_sent), 1) if last_reply > first_sent else None,
            "webhook": {"p50_ms": r(res["p50"]), "p99_ms": r(res["p99"])},
            "latency": pcts(latencies), "cdf": cdf(latencies), "acked_timeline": res["timeline"],
            "timeline": timeline([t - first_sent for t in replies.values()], 0.5),
            "sent_at": sent_at, "arrived": replies}


def show(res: dict) -> None:
    print("\n== Turns: inbound SMS -> support flow -> reply accepted by the fake Twilio")
    print(f"offered {res['offered']} turns at {res['offered_per_s']}/s (open loop), acked {res['acked']}, "
          f"replied {res['replied']}" + (f", errors {res['errors']}" if res["errors"] else ""))
    lat = res["latency"]
    print(f"turns/s {res['turns_per_s']}; end-to-end latency p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
          f"p99 {lat['p99_ms']} ms (target p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE}/s); webhook ack p99 "
          f"{res['webhook']['p99_ms']} ms")
    if res.get("stages"):
        print("where a turn's time goes (p50 / p90 / p99 ms): " + "; ".join(
            f"{name} {v['p50_ms']} / {v['p90_ms']} / {v['p99_ms']}" for name, v in res["stages"].items()))
    for x in res.get("sweep", []):
        print(f"  at {x['rate']:g}/s offered: {x['replied']}/{x['offered']} replied, {x['turns_per_s']} turns/s, "
              f"p50 {x['latency']['p50_ms']} ms, p99 {x['latency']['p99_ms']} ms")
    print("CPU ms per turn: " + ", ".join(f"{k} {v}" for k, v in res["cpu_ms_per_turn"].items()))
    print(f"processes: {res['processes']}")
