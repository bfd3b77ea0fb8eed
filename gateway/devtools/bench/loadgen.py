"""Load generator for `gateway bench`, run as its own process so it does not share the server's CPU.

Reads a JSON job on stdin: {"url": ..., "requests": [[headers, body], ...], "concurrency": N,
"rate": requests/s or null, "timestamps": bool}; sends every request once (closed loop at
`concurrency`, or open loop at a fixed `rate`), and prints JSON: count, ok, errors by status,
elapsed, latencies (ms) p50/p95/p99, the latency at every percentile 0..100 (`cdf`), acknowledged
requests per `bucket_s` from the start (`timeline`), the indexes of acknowledged requests and, with `timestamps`,
the wall-clock time (unix seconds) each request was sent, so another process's receive times can
be matched against them.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from gateway.app.loop import runner


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


BUCKET_S = 0.5


def cdf(values: list[float]) -> list[float]:
    """The value at every percentile 0, 1, ..., 100 (rounded to 0.01)."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 2) for q in range(101)]


def timeline(times: list[float], bucket: float) -> list[int]:
    """How many of `times` (seconds from a start) fall in each `bucket`-second slot."""
    if not times:
        return []
    counts = [0] * (int(max(times) / bucket) + 1)
    for t in times:
        counts[int(t / bucket)] += 1
    return counts


async def run(job: dict) -> dict:
    url, reqs = job["url"], job["requests"]
    concurrency, rate = job.get("concurrency", 16), job.get("rate")
    latencies: list[float] = []
    errors: dict[str, int] = {}
    acked: list[int] = []
    done_at: list[float] = []
    sent_at: list[float | None] = [None] * len(reqs)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async def send(i: int) -> None:
            headers, body = reqs[i]
            sent_at[i] = time.time()
            t0 = time.perf_counter()
            try:
                async with http.post(url, data=body.encode(), headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except Exception as exc:
                status = type(exc).__name__
            latencies.append((time.perf_counter() - t0) * 1000)
            if status == 200 or status == 201:
                acked.append(i)
                done_at.append(time.perf_counter() - start)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1

        start = time.perf_counter()
        if rate:
            tasks = []
            for i in range(len(reqs)):
                target = start + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(i)))
            await asyncio.gather(*tasks)
        else:
            it = iter(range(len(reqs)))

            async def worker():
                for i in it:
                    await send(i)
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    out = {"count": len(reqs), "ok": len(acked), "errors": errors, "elapsed": elapsed,
           "throughput": len(acked) / elapsed if elapsed else 0.0,
           "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
           "p99": percentile(latencies, 99), "acked": acked,
           "cdf": cdf(latencies), "timeline": timeline(done_at, BUCKET_S), "bucket_s": BUCKET_S}
    if job.get("timestamps"):
        out["sent_at"] = sent_at
    return out


def main() -> None:
    job = json.load(sys.stdin)
    with runner() as loop:     # uvloop where installed: the load costs the machine less
        print(json.dumps(loop.run(run(job))))


if __name__ == "__main__":
    main()
