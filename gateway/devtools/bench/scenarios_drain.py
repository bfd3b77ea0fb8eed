"""Scenario: CPU per turn drained from a backlog, the figure to compare two versions by.

One `gateway api` queues first turns from distinct customers ("hi": the support flow greets with
its menu) while no worker runs; then one `gateway worker` starts and drains them all, in batches
as big as GATEWAY_WORKER_BATCH allows. The CPU seconds the worker, this database's PostgreSQL
backends and Redis spent from the worker's start to the last reply at the fake, divided by the
turns, is what one turn costs on the batched path. Unlike the turns scenario (open loop: the API
ingests every webhook while the worker answers only those it reaches in the wait) every turn is
counted, and the ingest is not; the worker's own start (measured on a warm-up worker, up to its
first heartbeat) is taken out.
"""
from __future__ import annotations

import time

from gateway.devtools.bench.harness import (Bench, CpuMeter, Progress, cpu_seconds, figure, get_json, load, message_sid,
                                            new_run_id, phone, r, signed_sms)
from gateway.devtools.bench.scenarios_turns import _drive, start_api


def run(b: Bench) -> dict:
    """On a Redis of its own (embedded), so the Redis figures are this run's alone."""
    return b.on_private_redis(_measure)


def _measure(b: Bench) -> dict:
    fake, common, _api, url = start_api(b)
    warm, _ = b.start_gateway("worker", **common)
    _drive(fake, url, block=690, n=50, rate=50)           # flows loaded, pools warm
    warm.terminate()
    warm.wait(15)
    n = int(min(b.sizes.turns_rate * b.sizes.turns_seconds, 5000))
    run_id = new_run_id()
    reqs = [signed_sms(url, sid=message_sid("d" + run_id, i), sender=phone(691, i), body="hi") for i in range(n)]
    start_count = get_json(f"{fake}/_stats?since=0&limit=0")["count"]
    queued = load({"url": url, "requests": reqs, "concurrency": 64, "rate": 2000})
    meter = CpuMeter(b, {})      # PostgreSQL and Redis; the worker's own counter is read below
    meter.start()
    started = time.monotonic()
    worker, _ = b.start_gateway("worker", **common)
    # the worker's own CPU from its first heartbeat on (its start-up left out), and the turns answered
    # from then on: subtracting another worker's start-up cost instead left a few hundred ms of noise,
    # more than a small backlog costs (0.0 ms per turn in the tiny smoke run)
    base_cpu = cpu_seconds(worker.pid, precise=True)
    base_replied = get_json(f"{fake}/_stats?since=0&limit=0")["count"] - start_count
    b.profile("worker", worker.pid)
    progress = Progress("turns drained", queued["ok"])
    replied = 0
    deadline = started + max(120.0, n / 20)
    while time.monotonic() < deadline:
        replied = get_json(f"{fake}/_stats?since=0&limit=0")["count"] - start_count
        progress.update(replied)
        if replied >= queued["ok"]:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    worker_cpu = cpu_seconds(worker.pid, precise=True) - base_cpu
    cpu = meter.stop(replied)
    b.stop_all()
    ms = {"worker": r(worker_cpu / max(replied - base_replied, 1) * 1000, 3), **{k: v for k, v in cpu["cpu_ms"].items()
                                                                   if k != "total"}}
    ms["total"] = r(sum(ms.values()), 3)
    measured = (", ".join(f"{k} {v} ms" for k, v in ms.items()) +
                f"; {replied}/{queued['ok']} drained at {r(replied / elapsed, 1)} turns/s; per turn "
                f"{cpu['per_unit']['postgres_transactions']} PostgreSQL transactions, "
                f"{cpu['per_unit']['redis_commands']} Redis commands")
    return {"turns": replied, "queued": queued["ok"], "drained_per_s": r(replied / elapsed, 1),
            "cpu_ms_per_turn": ms, "per_turn": cpu["per_unit"],
            "figures": [figure("CPU per turn drained from a backlog (worker, PostgreSQL, Redis)", measured,
                               "drive down", None)],
            "summary": {"measured": measured, "target": "drive down (no target)", "ratio": None, "verdict": "INFO"}}


def show(res: dict) -> None:
    print(f"\n== Drain: {res['queued']} first turns queued, then 1 worker drains them (support flow)")
    print(f"drained {res['turns']} at {res['drained_per_s']} turns/s; CPU ms per turn: " +
          ", ".join(f"{k} {v}" for k, v in res["cpu_ms_per_turn"].items()))
    print(f"per turn: {res['per_turn']['postgres_transactions']} PostgreSQL transactions, "
          f"{res['per_turn']['redis_commands']} Redis commands")
