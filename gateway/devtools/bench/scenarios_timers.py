"""Scenario 4, timers: with many journey timers scheduled, how fast the due ones fire.

`gateway.journeys.bench.timer_bench` seeds the timers with COPY (a few due, the rest far ahead),
then a TimerService fires the due ones. The naive comparison is the same claim query without the
partial index on due_at (a scan of everything scheduled).
"""
from __future__ import annotations

import asyncio

from gateway.devtools.bench.harness import Bench, connect_pool, figure, r, verdict

TARGET_SECONDS = 1.0


async def _run(dsn: str, scheduled: int, due: int) -> dict:
    from gateway.journeys.bench import timer_bench

    pool = await connect_pool(dsn)
    try:
        return await timer_bench(pool, n_scheduled=scheduled, n_due=due)
    finally:
        await pool.close()


def run(b: Bench) -> dict:
    res = asyncio.run(_run(b.dsn, b.sizes.timers_scheduled, b.sizes.timers_due))
    ratio = r(res["claim_ms_without_index"] / res["claim_ms_with_index"], 1) if res["claim_ms_with_index"] else None
    ok = res["fired"] == res["due"] and res["fire_seconds"] < TARGET_SECONDS
    figures = [figure(f"timers: {res['due']:,} due of {res['scheduled']:,} scheduled fired (batches of 500)",
                      f"{res['fire_seconds']} s, {res['fired']:,} fired", f"< {TARGET_SECONDS:g} s, every due one once", ok),
               figure("one claim of 200 due timers, partial index on due_at vs without (same run)",
                      f"{res['claim_ms_with_index']} ms vs {res['claim_ms_without_index']} ms ({ratio}x)",
                      "uses the partial index", res["uses_partial_index"])]
    return {**res, "claim_ratio_without_vs_with_index": ratio, "figures": figures,
            "summary": {"measured": f"{res['fired']:,} due of {res['scheduled']:,} scheduled fired in "
                                    f"{res['fire_seconds']} s ({res['fired_per_second']}/s)",
                        "target": f"{10_000:,} due fired in < {TARGET_SECONDS:g} s with 1,000,000 scheduled",
                        "ratio": ratio, "ratio_meaning": "one claim without / with the partial index",
                        "verdict": verdict(ok)}}


def show(res: dict) -> None:
    from gateway.journeys.bench import format_result

    print("\n== Timers")
    print(format_result(res))
    print(f"target: 10,000 due fired in < {TARGET_SECONDS:g} s with 1,000,000 scheduled -> "
          f"{res['summary']['verdict']}")
