"""`gateway bench` end to end at tiny sizes: it starts what it needs, measures, and writes its JSON.

No timing assertions (machines differ); what must hold anywhere: every scenario reports its
figures, target and verdict, and every webhook the gateway acknowledged is in PostgreSQL.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow   # runs `gateway bench` end to end


def bench_tiny(infra, tmp_path, scenarios: str, timeout: float = 150, extra: tuple = ()) -> tuple[dict, str]:
    """Run `gateway bench --scale tiny --scenarios ...` as a process; (its JSON results, its stdout)."""
    admin_dsn, redis_url = infra
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
    env.update(GATEWAY_DATABASE_URL=admin_dsn, GATEWAY_REDIS_URL=redis_url, GATEWAY_LOG_LEVEL="warning",
               GATEWAY_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--scale", "tiny", "--scenarios", scenarios,
         "--out", str(out), *extra], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_bench_tiny_run_writes_results(infra, tmp_path):
    report = tmp_path / "bench.html"
    results, stdout = bench_tiny(infra, tmp_path, "ingest,outbound,timers,memory,retention",
                                 extra=("--report", str(report)))

    assert results["scale"] == "tiny"
    for name in ("ingest", "outbound", "timers", "memory", "retention"):
        summary = results[name]["summary"]
        assert {"measured", "target", "ratio", "verdict"} <= summary.keys()
        assert summary["verdict"] in ("PASS", "MISS", "INFO")

    ingest = results["ingest"]
    assert ingest["every_acked_message_stored"] is True
    assert all(row["acked"] > 0 and row["acked_and_stored"] for row in ingest["rows"])
    assert {"naive", "gateway"} == set(ingest["peak_per_s"])
    assert results["outbound"]["gateway"]["sent"] == results["outbound"]["messages"]
    failures = results["outbound"]["failures"]
    assert (failures["accepted"], failures["out_of_order"], failures["duplicates"]) == (failures["replies"], 0, 0)
    assert results["outbound"]["slow_provider"]["sent"] == results["outbound"]["slow_provider"]["messages"]
    assert results["timers"]["fired"] == results["timers"]["due"]
    assert results["memory"]["processed"] == results["memory"]["conversations"]
    retention = results["retention"]
    assert retention["expired"] > 0 and retention["left_unexpired"] == 0
    assert "every acknowledged message stored in PostgreSQL: True" in stdout
    assert "== Summary (tiny run" in stdout
    # every figure printed with its target and verdict
    for name in ("ingest", "outbound"):
        for f in results[name]["figures"]:
            assert f["verdict"] in ("PASS", "MISS", "INFO") and f["target"]
            assert f"[{f['verdict']}] {f['name']}: {f['measured']}  (target: {f['target']})" in stdout
    assert set(ingest["cpu_ms_per_ack_at_peak"]) == {"naive", "gateway"}
    # the report: one self-contained page with SVG charts and every figure
    page = report.read_text()
    assert page.count("<svg") >= 3 and "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "CPU per acknowledged webhook, gateway" in page


def test_capacity_scenario_reports_every_component(infra, tmp_path):
    """The sizing figures of README's Scale-out section: CPU per turn for every component."""
    capacity = bench_tiny(infra, tmp_path, "capacity", timeout=300)[0]["capacity"]
    assert capacity["turns"] > 0
    assert set(capacity["cpu_ms_per_turn"]) == {"api", "worker", "postgres", "redis"}
    assert all(v > 0 for v in capacity["cpu_ms_per_turn"].values()), capacity["cpu_ms_per_turn"]
    assert capacity["per_turn"]["redis_commands"] > 0 and capacity["per_turn"]["postgres_transactions"] > 0


def test_drain_scenario_counts_every_queued_turn(infra, tmp_path):
    """CPU per turn drained from a backlog: every queued turn is answered and counted."""
    drain = bench_tiny(infra, tmp_path, "drain", timeout=300)[0]["drain"]
    assert drain["turns"] == drain["queued"] > 0
    assert set(drain["cpu_ms_per_turn"]) == {"worker", "postgres", "redis", "total"}
    assert drain["cpu_ms_per_turn"]["worker"] > 0 and drain["cpu_ms_per_turn"]["postgres"] > 0


def test_turns_scenario_answers_every_turn_and_sweeps_lower_rates(infra, tmp_path):
    """The turns scenario: every offered turn answered, CPU per turn for every component, where a
    turn's time goes stage by stage, and the same turns at lower offered rates, each with its
    latencies and every one answered."""
    results, stdout = bench_tiny(infra, tmp_path, "turns", timeout=300)
    turns = results["turns"]
    assert turns["replied"] == turns["offered"] > 0
    assert set(turns["cpu_ms_per_turn"]) >= {"api", "worker", "postgres", "redis"}
    assert [x["rate"] for x in turns["sweep"]] == [r * 20 for r in (0.2, 0.4, 0.6, 0.8)]   # tiny: 20/s
    for x in turns["sweep"]:
        assert x["replied"] == x["offered"] > 0 and x["latency"]["p99_ms"] is not None, x
        assert f"at {x['rate']:g}/s offered: {x['replied']}/{x['offered']} replied" in stdout
    assert "turns below the target's rate" in {f["name"].split(":")[0] for f in turns["figures"]}
    # where the time goes: every stage measured, each non-negative (one machine's clocks)
    assert set(turns["stages"]) == {"webhook -> ingest", "ingest -> round", "round -> provider", "provider -> finished"}
    for stage in turns["stages"].values():
        assert stage["p50_ms"] is not None and stage["p50_ms"] >= 0, turns["stages"]
    assert "where a turn's time goes" in stdout
    assert "sent_at" not in turns and "arrived" not in turns
