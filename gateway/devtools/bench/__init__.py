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
  capacity  CPU per turn of the api, the worker, PostgreSQL and Redis (sizing; runs when named)
  drain     CPU per turn of the worker, PostgreSQL and Redis draining a backlog (runs when named)
  retention inbox p99 while a retention pass turns the oldest tenth of those messages into tombstones
  memory    a worker's RSS after many conversations each had a flow turn

Prints a table per scenario and a summary, and writes every figure to a JSON file.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from gateway.app.settings import Settings
from gateway.devtools.bench import (scenarios_capacity, scenarios_drain, scenarios_inbox, scenarios_ingest,
                                    scenarios_memory, scenarios_outbound, scenarios_retention, scenarios_timers,
                                    scenarios_turns)
from gateway.devtools.bench.harness import SCALES, Bench, figure, show_figures

# capacity (CPU per turn well below saturation, for sizing) and drain (CPU per turn from a backlog,
# to compare versions by) run when named: the turns scenario prints CPU per turn at its target rate already
SCENARIOS = {
    "ingest": scenarios_ingest,
    "turns": scenarios_turns,
    "outbound": scenarios_outbound,
    "timers": scenarios_timers,
    "inbox": scenarios_inbox,
    "retention": scenarios_retention,
    "capacity": scenarios_capacity,
    "drain": scenarios_drain,
    "memory": scenarios_memory,
}
DEFAULT = [name for name in SCENARIOS if name not in ("capacity", "drain")]


def print_summary(results: dict, scale: str) -> None:
    rows = [(name, res) for name, res in results.items() if isinstance(res, dict) and "summary" in res]
    if not rows:
        return
    print(f"\n== Summary ({scale} run" + (")" if scale == "full" else
                                         f"; {SCALE_NOTES.get(scale, 'smaller sizes than the targets name')})"))
    for name, res in rows:
        s = res["summary"]
        ratio = f", {s['ratio']}x vs baseline" if s.get("ratio") is not None else ""
        print(f"{name} [{s['verdict']}]{ratio}")
        show_figures(res.get("figures") or [figure(name, s["measured"], s["target"], None) | {"verdict": s["verdict"]}])


SCALE_NOTES = {
    "standard": "the targets' sizes except ingest (3,000 webhooks per concurrency, not 5,000), outbound "
                "(10,000 messages, not 20,000), the inbox (100,000 conversations / 1,009,980 messages, not "
                "1M / 10M) and memory (5,000 conversations, not 100,000): add --full for those",
    "quick": "smaller sizes than the targets name; verdicts are indicative",
    "tiny": "smoke-test sizes; verdicts mean nothing",
}


def cross_figures(results: dict) -> None:
    """Figures that need two scenarios of the same run: turns/s per ingest peak."""
    turns, ingest = results.get("turns"), results.get("ingest")
    if not (isinstance(turns, dict) and isinstance(ingest, dict)):
        return
    peak, tps = ingest["peak_per_s"]["gateway"], turns.get("turns_per_s")
    ratio = round(tps / peak, 3) if tps and peak else None
    turns["turns_per_ingest_peak"] = ratio
    turns.setdefault("figures", []).append(figure(
        "turns/s divided by the ingest peak (same run)", f"{ratio} ({tps} turns/s / {peak} acked/s)",
        f">= {TARGET_TURNS_PER_INGEST}", ratio is not None and ratio >= TARGET_TURNS_PER_INGEST))


TARGET_TURNS_PER_INGEST = 0.3


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(args, settings: Settings) -> int:
    from gateway.app.embedded import infrastructure

    chosen = DEFAULT if args.scenarios == "all" else [c.strip() for c in args.scenarios.split(",")]
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    scale = getattr(args, "scale", None) or ("quick" if args.quick else "full" if args.full else "standard")
    results: dict = {"scale": scale, "scale_note": SCALE_NOTES.get(scale, "the targets' sizes")}
    if scale != "full":
        print(f"{scale} run: {results['scale_note']}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)    # SIGTERM cleans up like Ctrl-C
    out = Path(args.out)
    interrupted = False
    with infrastructure(settings) as s:
        b = Bench(s, SCALES[scale], scale=scale, results=results, profile_dir=getattr(args, "profile", None))
        try:
            for name in chosen:
                print(f"running {name} ({scale}) ...", flush=True)
                b.dsn = b.fresh_database()
                b.prefix = f"gwbench{secrets.token_hex(3)}"
                b.scenario = name
                started = time.monotonic()
                try:
                    res = SCENARIOS[name].run(b)
                finally:
                    b.cleanup()
                res["seconds"] = round(time.monotonic() - started, 1)
                results[name] = res
                SCENARIOS[name].show(res)
                if res.get("figures"):
                    show_figures(res["figures"])
                out.write_text(json.dumps(results, indent=2, default=str))
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: stopping everything the bench started ...", flush=True)
        finally:
            b.cleanup()
    if interrupted:
        return 130
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "load_average_at_end": os.getloadavg()}
    cross_figures(results)
    print_summary(results, scale)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    if getattr(args, "report", None):
        from gateway.devtools.bench.report import write_report

        write_report(results, Path(args.report))
        print(f"report written to {args.report}")
    return 0
