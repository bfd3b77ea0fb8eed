"""`gateway bench`: the gateway's headline figures, each next to a baseline measured in the same run.

Everything needed runs on this machine: the gateway's roles (`gateway api`, `gateway worker`), a
fake Twilio, the naive baselines and the load generator, each in a process of its own, against
PostgreSQL and Redis as configured (embedded ones when not). Every scenario gets a fresh database
(`gwbench_*`, dropped afterwards) and Redis key prefix. Scenarios:

  ingest    signed Twilio webhooks/s and latency vs a naive one-INSERT-per-request app
  turns     inbound -> flow -> reply at the fake provider, end-to-end latency at a fixed rate
  outbound  sends/s through the outbox vs a naive send-and-UPDATE loop
  timers    firing the due ones among many scheduled timers
  inbox     queue listing and history pages with millions of messages (vs OFFSET pagination)
  capacity  CPU per turn of the api, the worker, PostgreSQL and Redis (sizing)
  retention inbox p99 while a retention pass turns the oldest tenth of those messages into tombstones
  memory    a worker's RSS after many conversations each had a flow turn

Prints a table per scenario and a summary, and writes every figure to a JSON file.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

from gateway.bench import (
    scenarios_capacity,
    scenarios_inbox,
    scenarios_ingest,
    scenarios_memory,
    scenarios_outbound,
    scenarios_retention,
    scenarios_timers,
    scenarios_turns,
)
from gateway.bench.harness import SCALES, Bench
from gateway.settings import Settings

SCENARIOS = {
    "ingest": scenarios_ingest,
    "turns": scenarios_turns,
    "outbound": scenarios_outbound,
    "timers": scenarios_timers,
    "inbox": scenarios_inbox,
    "retention": scenarios_retention,
    "capacity": scenarios_capacity,
    "memory": scenarios_memory,
}


def print_summary(results: dict, scale: str) -> None:
    rows = [(name, res["summary"]) for name, res in results.items() if isinstance(res, dict) and "summary" in res]
    if not rows:
        return
    print(f"\n== Summary ({scale} run)" + ("" if scale == "full" else
                                             ": smaller sizes than the targets name; verdicts are indicative"))
    print(f"{'scenario':<10}{'verdict':<8}{'vs baseline':>12}  measured  |  target")
    for name, s in rows:
        ratio = f"{s['ratio']}x" if s.get("ratio") is not None else "-"
        print(f"{name:<10}{s['verdict']:<8}{ratio:>12}  {s['measured']}  |  {s['target']}")


def main(args, settings: Settings) -> int:
    from gateway.cli import infrastructure

    chosen = list(SCENARIOS) if args.scenarios == "all" else [c.strip() for c in args.scenarios.split(",")]
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    scale = getattr(args, "scale", None) or ("quick" if args.quick else "full")
    results: dict = {"scale": scale}
    with infrastructure(settings) as s:
        b = Bench(s, SCALES[scale], scale=scale, results=results)
        try:
            for name in chosen:
                print(f"running {name} ({scale}) ...", flush=True)
                b.dsn = b.fresh_database()
                b.prefix = f"gwbench{secrets.token_hex(3)}"
                started = time.monotonic()
                try:
                    res = SCENARIOS[name].run(b)
                finally:
                    b.stop_all()
                    b.drop_databases()
                res["seconds"] = round(time.monotonic() - started, 1)
                results[name] = res
                SCENARIOS[name].show(res)
                Path(args.out).write_text(json.dumps(results, indent=2, default=str))
        finally:
            b.stop_all()
            b.drop_databases()
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print_summary(results, scale)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {args.out}")
    return 0
