"""The `gateway` command line: run, api, worker, migrate, simulate, tokens, flows, bench."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from gateway.app.embedded import infrastructure
from gateway.app.log import configure_logging, get_logger
from gateway.app.loop import loop_name
from gateway.app.loop import runner as loop_runner
from gateway.app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger("gateway")


async def serve(settings: Settings, roles: tuple[str, ...]) -> None:
    from aiohttp import web

    from gateway.app.runtime import Runtime
    from gateway.http.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Take the listening address before anything else starts: a port already in use stops the start
    # at once, before workers, the outbox sender or a channel's listener have begun any work.
    sock = _listen(settings.http_host, settings.http_port) if "http" in roles else None
    async with Runtime(settings, roles=roles) as runtime:
        extra = await runtime.start_listeners()
        runner = None
        if sock is not None:
            runner = web.AppRunner(create_app(runtime), access_log=None, shutdown_timeout=5)
            await runner.setup()
            site = web.SockSite(runner, sock)
            await site.start()
            log.info("gateway listening", url=f"http://{settings.http_host}:{settings.http_port}",
                     roles=list(roles), channels=_channel_modes(runtime), event_loop=loop_name(loop))
        else:
            log.info("gateway worker running", roles=list(roles), event_loop=loop_name(loop))
        await stop.wait()
        log.info("shutting down")
        if runner is not None:
            await runner.cleanup()
        for closer in extra:
            await closer()


class CannotStart(Exception):
    """A start-up condition an operator fixes (address in use): logged as one line, no traceback."""


def _listen(host: str, port: int):
    """A bound, listening TCP socket for the HTTP role (IPv6 when the host is an IPv6 literal)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise CannotStart(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def _channel_modes(runtime: Runtime) -> dict:
    from gateway.channels.modes import channel_modes

    return {ch.value: mode for ch, mode in channel_modes(runtime.settings).items()}


def cmd_serve(roles: tuple[str, ...]):
    def run(args, settings: Settings) -> int:
        with infrastructure(settings, supervise=True) as settings, loop_runner(settings.event_loop) as runner:
            runner.run(serve(settings, roles))
        return 0
    return run


def cmd_migrate(args, settings: Settings) -> int:
    from gateway.infra import db

    with infrastructure(settings) as settings:
        applied = asyncio.run(db.migrate_dsn(settings.session_database_url, pooler=settings.database_pooler))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_tokens(args, settings: Settings) -> int:
    from gateway.domain import auth
    from gateway.infra import db

    async def go():
        await db.migrate_dsn(settings.session_database_url, pooler=settings.database_pooler)
        pool = await db.create_pool(settings.database_url, min_size=1, max_size=2, pooler=settings.database_pooler)
        try:
            async with pool.acquire() as conn:
                if args.tokens_cmd == "create":
                    token_id, token = await auth.create_token(conn, name=args.name, role=args.role,
                                                              agent_id=args.agent_id, scopes=tuple(args.scope))
                    print(f"token {token_id} ({args.role}) created. Shown once, store it now:\n{token}")
                elif args.tokens_cmd == "list":
                    for r in await auth.list_tokens(conn):
                        state = "revoked" if r["revoked_at"] else "active"
                        scopes = ",".join(r["scopes"]) or "-"
                        print(f"{r['id']:>4}  gw_{r['prefix']}_…  {r['role']:<11} {state:<7} {scopes:<12} {r['name']}")
                else:
                    revoked = await auth.revoke_token(conn, args.token)
                    print("revoked" if revoked else "no such active token")
                    if revoked:
                        await _announce_revocation(settings, revoked)
                    return 0 if revoked else 1
        finally:
            await pool.close()
        return 0

    with infrastructure(settings) as settings:
        return asyncio.run(go()) or 0


async def _announce_revocation(settings: Settings, revoked: dict) -> None:
    """Open sockets in running gateways drop the token now (else on their periodic re-check)."""
    from types import SimpleNamespace

    from gateway.http.access import announce
    from gateway.infra.redis_client import connect_small
    from gateway.pipeline.queue import Keys

    client = connect_small(settings.redis_url, socket_connect_timeout=2)
    try:
        await announce(SimpleNamespace(redis=client, keys=Keys(settings.redis_prefix)),
                       agent_id=revoked["agent_id"], token_ids=[revoked["id"]])
    finally:
        await client.aclose()


def cmd_simulate(args, settings: Settings) -> int:
    from gateway.devtools.simulate import simulate

    return asyncio.run(simulate(args, settings))


def cmd_health(args, settings: Settings) -> int:
    """Exit 0 when this host's worker heartbeat is fresh (container health checks)."""
    import socket

    import redis as redis_sync

    from gateway.infra.redis_client import connect_small_sync
    from gateway.pipeline.queue import Keys

    if not settings.redis_url:
        print("GATEWAY_REDIS_URL is required for health checks", file=sys.stderr)
        return 2
    client = connect_small_sync(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        alive = client.exists(Keys(settings.redis_prefix).heartbeat(args.role, socket.gethostname()))
    except redis_sync.RedisError as exc:
        print(f"redis unreachable: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print("healthy" if alive else "no recent heartbeat")
    return 0 if alive else 1


def cmd_bench(args, settings: Settings) -> int:
    from gateway.devtools.bench import main as bench_main

    return bench_main(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Conversational messaging gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="all roles in one process (HTTP, workers, timers)").set_defaults(
        func=cmd_serve(("http", "worker")))
    sub.add_parser("api", help="HTTP role only").set_defaults(func=cmd_serve(("http",)))
    sub.add_parser("worker", help="worker role only (queue, outbox, timers)").set_defaults(
        func=cmd_serve(("worker",)))
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    tokens = sub.add_parser("tokens", help="manage API tokens")
    tsub = tokens.add_subparsers(dest="tokens_cmd", required=True)
    create = tsub.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=("admin", "agent", "integration", "readonly"))
    create.add_argument("--agent-id", type=int, default=None)
    create.add_argument("--scope", action="append", default=[], choices=("events:read",),
                        help="an extra right: events:read lets an integration token read events back")
    tsub.add_parser("list")
    revoke = tsub.add_parser("revoke")
    revoke.add_argument("token", help="token id or prefix")
    tokens.set_defaults(func=cmd_tokens)

    health = sub.add_parser("health", help="exit 0 when this host's worker heartbeat is fresh")
    health.add_argument("--role", default="worker", choices=("worker",))
    health.set_defaults(func=cmd_health)

    sim = sub.add_parser("simulate", help="send a signed inbound message to a running gateway")
    from gateway.devtools.simulate import CHANNELS as SIMULATED

    sim.add_argument("channel", choices=SIMULATED)
    sim.add_argument("--from", dest="from_", required=True, help="customer address (phone or email)")
    sim.add_argument("--to", default=None, help="our address (number or mailbox)")
    sim.add_argument("--text", required=True)
    sim.add_argument("--subject", default="Hello")
    sim.add_argument("--url", default=None, help="gateway base URL (default: from settings)")
    sim.set_defaults(func=cmd_simulate)

    try:
        from gateway.flows.cli import add_subparser as add_flows
    except ImportError:
        add_flows = None
    if add_flows is not None:
        add_flows(sub)

    bench = sub.add_parser("bench", help="measure throughput and latency against a naive baseline")
    bench.add_argument("--scenarios", default="all")
    bench.add_argument("--quick", action="store_true", help="smaller sizes for a fast look")
    bench.add_argument("--full", action="store_true",
                       help="every scenario at its target's size (inbox 1M conversations / 10M messages)")
    bench.add_argument("--out", default="bench-results.json")
    bench.add_argument("--report", default=None, metavar="FILE.html",
                       help="also write a self-contained HTML page of the results (SVG charts)")
    bench.add_argument("--profile", default=None, metavar="DIR",
                       help="sample the gateway's processes with py-spy into DIR (top functions in the JSON)")
    bench.add_argument("--scale", choices=("full", "quick", "tiny"), default=None,
                       help=argparse.SUPPRESS)  # tiny: the smoke test's sizes
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, settings.log_addresses)
    try:
        return args.func(args, settings) or 0
    except CannotStart as exc:
        log.error("gateway cannot start", error=str(exc))
        return 1
    except Exception as exc:   # e.g. a plugin that does not import: one log line (JSON) says why
        log.exception("gateway stopped by an error", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
