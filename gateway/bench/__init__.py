"""`gateway bench`: measured figures, each against a baseline measured in the same run.

Everything runs on this machine: PostgreSQL and Redis (configured or embedded), the gateway's
roles and the naive baseline as separate processes, and the load generator in a process of its
own. Results print as a table and are written as JSON (`--out`).
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import asyncpg

from gateway import db
from gateway.channels.twilio.adapter import compute_signature
from gateway.settings import Settings
from gateway.testing import free_port

BENCH_TOKEN = "bench-auth-token-0123456789abcdef"
BENCH_SID = "AC" + "0" * 32
OUR_NUMBER = "+15550001000"


@dataclass
class Bench:
    settings: Settings
    quick: bool
    dsn: str = ""
    prefix: str = ""
    procs: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    # -- processes ---------------------------------------------------------------------------
    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
        env.update({"GATEWAY_DATABASE_URL": self.dsn, "GATEWAY_REDIS_URL": self.settings.redis_url,
                    "GATEWAY_REDIS_PREFIX": self.prefix, "GATEWAY_SECRET_KEY": "bench-secret",
                    "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_FORMAT": "json",
                    "GATEWAY_DATA_DIR": str(self.settings.data_dir),
                    "TWILIO_ACCOUNT_SID": BENCH_SID, "TWILIO_AUTH_TOKEN": BENCH_TOKEN,
                    "TWILIO_FROM_NUMBER": OUR_NUMBER})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, args: list[str], env: dict, port: int | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.procs.append(proc)
        if port is not None:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up in time")


def load(job: dict) -> dict:
    """Run the load generator in its own process."""
    out = subprocess.run([sys.executable, "-m", "gateway.bench.loadgen"], input=json.dumps(job).encode(),
                         capture_output=True, check=True)
    return json.loads(out.stdout)


def twilio_requests(url: str, n: int, run_id: str, repeat_share: float = 0.2) -> tuple[list, list[str]]:
    """n signed inbound webhooks: distinct customers, plus a share from a few repeat customers."""
    reqs, sids = [], []
    repeaters = max(1, n // 50)
    for i in range(n):
        customer = (i % repeaters) if (i % int(1 / repeat_share) == 0) else 100_000 + i
        sid = f"SM{run_id}{i:012d}".ljust(34, "0")[:34]
        params = [("MessageSid", sid), ("AccountSid", BENCH_SID), ("From", f"+1415{customer:07d}"),
                  ("To", OUR_NUMBER), ("Body", f"bench message {i} café"), ("NumMedia", "0")]
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": compute_signature(url, params, BENCH_TOKEN)}
        reqs.append([headers, urlencode(params)])
        sids.append(sid)
    return reqs, sids


async def count_stored(dsn: str, table_sql: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(table_sql, ids)
    finally:
        await conn.close()


def scenario_ingest(b: Bench) -> dict:
    naive_port, gw_port = free_port(), free_port()
    b.start(["gateway.bench.naive", "--port", str(naive_port), "--dsn", b.dsn, "--token", BENCH_TOKEN],
            b.env(), naive_port)
    b.start(["gateway", "api"], b.env(GATEWAY_HTTP_PORT=gw_port, GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{gw_port}",
                                      GATEWAY_DEFAULT_HANDLER="agent"), gw_port)
    n = 1500 if b.quick else 5000
    rows = []
    peak_naive = 0.0
    for concurrency in ((16, 64) if b.quick else (16, 64, 256)):
        run_id = secrets.token_hex(4)
        for name, port, sql in (
                ("naive", naive_port, "SELECT count(*) FROM naive_messages WHERE sid = ANY($1::text[])"),
                ("gateway", gw_port, "SELECT count(*) FROM messages WHERE direction = 'in' "
                                     "AND provider_message_id = ANY($1::text[])")):
            url = f"http://127.0.0.1:{port}/webhooks/twilio/inbound"
            reqs, sids = twilio_requests(url, n, f"{name[0]}{run_id}")
            res = load({"url": url, "requests": reqs, "concurrency": concurrency})
            acked = [sids[i] for i in res["acked"]]
            stored = asyncio.run(count_stored(b.dsn, sql, acked))
            rows.append({"target": name, "concurrency": concurrency, "acked": res["ok"],
                         "errors": res["errors"], "per_s": round(res["throughput"], 1),
                         "p50_ms": _r(res["p50"]), "p95_ms": _r(res["p95"]), "p99_ms": _r(res["p99"]),
                         "acked_and_stored": stored == len(acked), "stored": stored})
            if name == "naive":
                peak_naive = max(peak_naive, res["throughput"])
    # latency of the full pipeline at the baseline's peak rate (open loop)
    url = f"http://127.0.0.1:{gw_port}/webhooks/twilio/inbound"
    reqs, sids = twilio_requests(url, int(min(n, peak_naive * 5)) or 100, "r" + secrets.token_hex(4))
    at_rate = load({"url": url, "requests": reqs, "concurrency": 512, "rate": peak_naive})
    b.stop_all()
    best = {t: max(r["per_s"] for r in rows if r["target"] == t) for t in ("naive", "gateway")}
    return {"rows": rows, "peak_per_s": best, "ratio": round(best["gateway"] / best["naive"], 2),
            "at_baseline_peak_rate": {"rate": round(peak_naive, 1), "p50_ms": _r(at_rate["p50"]),
                                      "p99_ms": _r(at_rate["p99"]), "acked": at_rate["ok"],
                                      "errors": at_rate["errors"]},
            "every_acked_message_stored": all(r["acked_and_stored"] for r in rows)}


def _r(v):
    return None if v is None else round(v, 2)


SCENARIOS = {"ingest": scenario_ingest}


def print_results(results: dict) -> None:
    if "ingest" in results:
        ing = results["ingest"]
        print("\n== Ingest: signed Twilio webhooks, acknowledged/s (each figure measured in this run)")
        print(f"{'target':<9}{'conc':>6}{'acked':>8}{'per s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  stored?")
        for r in ing["rows"]:
            print(f"{r['target']:<9}{r['concurrency']:>6}{r['acked']:>8}{r['per_s']:>10}{r['p50_ms']:>9}"
                  f"{r['p95_ms']:>9}{r['p99_ms']:>9}  {'all' if r['acked_and_stored'] else 'MISSING'}"
                  + (f"  errors={r['errors']}" if r["errors"] else ""))
        print(f"peak: gateway {ing['peak_per_s']['gateway']}/s vs naive {ing['peak_per_s']['naive']}/s "
              f"= {ing['ratio']}x (target >= 1.5x)")
        a = ing["at_baseline_peak_rate"]
        print(f"gateway at the naive peak rate ({a['rate']}/s, open loop): p50 {a['p50_ms']} ms, "
              f"p99 {a['p99_ms']} ms (target p99 < 50 ms)")
    for name, value in results.items():
        if name != "ingest":
            print(f"\n== {name}\n{json.dumps(value, indent=2)}")


async def _fresh_database(admin_dsn: str) -> str:
    name = f"gwbench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    from urllib.parse import urlparse, urlunparse

    parsed = urlparse(admin_dsn)
    dsn = urlunparse(parsed._replace(path="/" + name))
    await db.migrate_dsn(dsn)
    return dsn


async def _drop_database(admin_dsn: str, dsn: str) -> None:
    from urllib.parse import urlparse

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlparse(dsn).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()


def main(args, settings: Settings) -> int:
    from gateway.cli import infrastructure

    chosen = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    with infrastructure(settings) as s:
        b = Bench(s, quick=args.quick)
        b.dsn = asyncio.run(_fresh_database(s.database_url))
        b.prefix = f"gwbench{secrets.token_hex(3)}"
        try:
            for name in chosen:
                print(f"running {name} ...", flush=True)
                b.results[name] = SCENARIOS[name](b)
        finally:
            b.stop_all()
            asyncio.run(_drop_database(s.database_url, b.dsn))
    b.results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print_results(b.results)
    Path(args.out).write_text(json.dumps(b.results, indent=2, default=str))
    print(f"\nresults written to {args.out}")
    return 0
