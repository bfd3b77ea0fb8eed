"""Scenario: what one turn costs each component, for sizing (README, Scale-out).

One `gateway api` and one `gateway worker` (the support flow, replies to the fake Twilio) take
first turns from distinct customers at a fixed rate well below saturation; the CPU seconds each
process, the database's PostgreSQL backends and the Redis server spent are divided by the turns
done, with Redis commands and PostgreSQL transactions per turn. Per 1,000 turns/s, the cores each
component needs follow directly. The run has a Redis of its own, so its figures are this run's.
"""
from __future__ import annotations

from gateway.devtools.bench.harness import Bench, CpuMeter, figure, r
from gateway.devtools.bench.scenarios_turns import _drive, start_api


def run(b: Bench) -> dict:
    """On a Redis of its own (embedded), so the Redis figures are this run's alone."""
    return b.on_private_redis(_measure)


def _measure(b: Bench) -> dict:
    fake, common, api, url = start_api(b)
    worker, _ = b.start_gateway("worker", **common)
    rate = min(b.sizes.turns_rate, 60.0)
    _drive(fake, url, block=660, n=max(20, int(rate)), rate=rate)   # flows loaded, pools warm
    meter = CpuMeter(b, {"api": api.pid, "worker": worker.pid})
    meter.start()
    res = _drive(fake, url, block=670, n=int(rate * b.sizes.turns_seconds), rate=rate)
    # backends opened during the run count in full; those closed during it are missed (the pools keep theirs)
    cpu = meter.stop(res["replied"])
    b.stop_all()
    ms = {k: v for k, v in cpu["cpu_ms"].items() if k != "total"}
    cores = {k: r(v, 2) for k, v in ms.items()}     # ms of CPU per turn = cores per 1,000 turns/s
    first = max(ms, key=ms.get)
    measured = (f"CPU ms per turn: api {cores['api']}, worker {cores['worker']}, PostgreSQL {cores['postgres']}, "
                f"Redis {cores['redis']} ({res['replied']} turns at {rate:g}/s)")
    return {"turns": res["replied"], "rate": rate, "cpu_ms_per_turn": ms,
            "cores_per_1000_turns_s": cores, "saturates_first": first, "per_turn": cpu["per_unit"],
            "figures": [figure("CPU per turn well below saturation (sizing)", measured, "figures for sizing", None)],
            "summary": {"measured": measured, "target": "figures for sizing (no target)", "ratio": None,
                        "verdict": "INFO"}}


def show(res: dict) -> None:
    print(f"\n== Capacity: {res['turns']} first turns at {res['rate']:g}/s, 1 api + 1 worker (support flow)")
    print(f"{'component':<12}{'CPU ms/turn':>12}{'cores per 1,000 turns/s':>26}")
    for name, value in res["cpu_ms_per_turn"].items():
        print(f"{name:<12}{value:>12}{res['cores_per_1000_turns_s'][name]:>26}")
    print(f"per turn: {res['per_turn']['redis_commands']} Redis commands, "
          f"{res['per_turn']['postgres_transactions']} PostgreSQL transactions; most CPU per turn: "
          f"{res['saturates_first']}")
