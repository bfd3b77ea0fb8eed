"""The production topology as processes on this machine: two `gateway api` behind a round-robin
front, three `gateway worker`, the machine's PostgreSQL and Redis, signed Twilio webhooks from several
customers, one worker and one api SIGKILLed mid-run. Every acknowledged message is stored once,
processed once, in order per conversation, and answered once. docker/compose.yml describes the same
topology; a test keeps the two in sync."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import yaml
from scale_support import RoundRobinFront

from gateway.devtools.fakes.replies import order_report
from gateway.devtools.simulate_providers import post_twilio_form, twilio_inbound_params
from gateway.devtools.testing import assert_each_processed_once_in_order, free_port, settings_env, wait_for

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yml"
BUSINESS = "+15550009999"
CUSTOMERS, MESSAGES = 12, 8

# The topology, as docker/compose.yml must describe it: service -> (command, processes).
TOPOLOGY = {"api": (["gateway", "api"], 2), "worker": (["gateway", "worker"], 3)}
# What every gateway process is configured with (names; values differ per deployment).
SHARED_ENV = {"GATEWAY_DATABASE_URL", "GATEWAY_REDIS_URL", "GATEWAY_SECRET_KEY", "GATEWAY_ADMIN_TOKEN",
              "GATEWAY_PUBLIC_URL", "GATEWAY_DEFAULT_HANDLER", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
              "TWILIO_FROM_NUMBER"}
API_ENV = {"GATEWAY_HTTP_HOST", "GATEWAY_HTTP_PORT"}


def test_compose_describes_the_tested_topology():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "front", *TOPOLOGY}
    for name, (command, processes) in TOPOLOGY.items():
        service = services[name]
        assert service["command"] == command, name
        assert service.get("deploy", {}).get("replicas", 1) == processes, name
        env = set(service["environment"])
        assert env == SHARED_ENV | (API_ENV if name == "api" else set()), (name, env ^ SHARED_ENV)
    front = services["front"]
    assert "api" in front["depends_on"], "the front balances over the api processes"
    upstream = (COMPOSE.parent / "front.conf").read_text()
    assert "server api:8080" in upstream and "proxy_pass http://api" in upstream


async def _deliver(params, front_url: str, token: str) -> None:
    """Post one signed inbound until the gateway acknowledges it (2xx), as Twilio retries."""
    for _ in range(200):
        try:
            status, _ = await post_twilio_form(f"{front_url}/webhooks/twilio/inbound", params, token, front_url)
            if 200 <= status < 300:
                return
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("an inbound was never acknowledged")


async def test_two_apis_three_workers_kill_one_of_each(settings, pool, clean, redis_client, fake_twilio,
                                                      spawn, tmp_path):
    api_ports = [free_port(), free_port()]
    async with RoundRobinFront(api_ports) as front:
        settings = settings.with_(default_handler="echo", public_url=front.url, reclaim_idle_ms=3000)
        env = settings_env(settings, GATEWAY_PUBLIC_URL=front.url, GATEWAY_ADMIN_TOKEN="admin-test-token",
                           TWILIO_ACCOUNT_SID=fake_twilio.account_sid, TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
                           TWILIO_FROM_NUMBER=BUSINESS, GATEWAY_TWILIO_API_BASE=fake_twilio.base_url,
                           GATEWAY_OUTBOX_ORPHAN_AFTER=3, GATEWAY_OUTBOX_BASE_DELAY=0.2,
                           GATEWAY_OUTBOX_MAX_DELAY=1)
        assert SHARED_ENV <= set(env), SHARED_ENV - set(env)
        apis = [spawn(TOPOLOGY["api"][0][1:], {**env, "GATEWAY_HTTP_HOST": "127.0.0.1",
                                                "GATEWAY_HTTP_PORT": str(port)}, tmp_path / f"api{i}.log")
                for i, port in enumerate(api_ports)]
        workers = [spawn(TOPOLOGY["worker"][0][1:], env, tmp_path / f"worker{i}.log")
                   for i in range(TOPOLOGY["worker"][1])]
        assert len(apis) == TOPOLOGY["api"][1]

        async def both_ready():
            async with aiohttp.ClientSession() as http:
                for port in api_ports:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            if resp.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
            return True
        await wait_for(both_ready, timeout=60, interval=0.3, message="the api processes did not start")

        customers = [f"+1555{c:07d}" for c in range(1, CUSTOMERS + 1)]
        acknowledged = 0

        async def customer(number: str, index: int) -> None:
            nonlocal acknowledged
            for i in range(MESSAGES):   # a phone sends its texts one after the other
                params = twilio_inbound_params(number, BUSINESS, f"c{index}-{i}",
                                               account_sid=fake_twilio.account_sid)
                await _deliver(params, front.url, fake_twilio.auth_token)
                acknowledged += 1

        traffic = asyncio.gather(*(customer(n, c) for c, n in enumerate(customers)))

        async def a_third_in():
            return acknowledged >= CUSTOMERS * MESSAGES // 3
        await wait_for(a_third_in, timeout=60, message="traffic did not get going")
        workers[0].send_signal(signal.SIGKILL)
        apis[0].send_signal(signal.SIGKILL)
        assert acknowledged < CUSTOMERS * MESSAGES, "traffic ended before the kills: the test proves nothing"
        await asyncio.wait_for(traffic, timeout=90)

        async def all_answered():
            return len(fake_twilio.accepted()) >= CUSTOMERS * MESSAGES and not await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")
        await wait_for(all_answered, timeout=90, interval=0.3, message="not every message was answered")
        assert all(w.poll() is None for w in workers[1:]) and apis[1].poll() is None, "a survivor died"

    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == CUSTOMERS * MESSAGES
    await assert_each_processed_once_in_order(pool, MESSAGES, CUSTOMERS)
    report = order_report([(m["to"], m["body"]) for m in fake_twilio.accepted()])
    assert (report.recipients, report.accepted, report.duplicates, report.out_of_order) == (
        CUSTOMERS, CUSTOMERS * MESSAGES, 0, 0), report.examples
