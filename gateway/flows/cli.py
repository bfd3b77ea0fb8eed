"""`gateway flows test|draw|check`: replay transcripts, draw diagrams, validate definitions.

The main CLI calls `add_subparser(subparsers)`; `python -m gateway.flows.cli test support` works too.
Each command is `func(args, settings=None) -> exit code`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.flows.model import FlowError


def flows_dir(args, settings=None) -> Path:
    """--dir, else what `gateway.infra.assets.flows_dir` resolves (setting, ./flows, the shipped flows)."""
    from gateway.infra.assets import flows_dir as resolve

    return Path(args.dir) if getattr(args, "dir", None) else resolve(getattr(settings, "flows_dir", None))


def cmd_test(args, settings=None) -> int:
    from gateway.flows.transcript import run_transcripts

    directory = flows_dir(args, settings)
    try:
        report = run_transcripts(directory, args.name)
    except FlowError as exc:
        print(f"flows: {exc}", file=sys.stderr)
        return 1
    if not report.results:
        print(f"flows: no transcript cases found in {directory}" + (f" for {args.name!r}" if args.name else ""),
              file=sys.stderr)
        return 1
    print(report.format())
    return 0 if report.ok else 1


def cmd_draw(args, settings=None) -> int:
    from gateway.flows.draw import render_graphviz, to_dot, to_mermaid, via_transitions
    from gateway.flows.loader import FlowRegistry

    try:
        flow = FlowRegistry.from_directory(flows_dir(args, settings)).get(args.name)
    except FlowError as exc:
        print(f"flows: {exc}", file=sys.stderr)
        return 1
    mermaid = via_transitions(flow) if args.engine == "transitions" else to_mermaid(flow)
    if not args.out:
        print(mermaid, end="")
        return 0
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix in (".svg", ".png"):
        if render_graphviz(to_dot(flow), out):
            print(f"wrote {out}")
            return 0
        fallback = out.with_suffix(".mmd")
        fallback.write_text(mermaid, encoding="utf-8")
        print(f"Graphviz 'dot' is not on PATH, so no {suffix[1:].upper()}: wrote Mermaid to {fallback} instead "
              "(install graphviz for images).", file=sys.stderr)
        return 0
    out.write_text(to_dot(flow) if suffix in (".dot", ".gv") else mermaid, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def cmd_check(args, settings=None) -> int:
    """Validate the flows, the team routing file and the journeys of a flows directory."""
    from gateway.flows.loader import FlowRegistry
    from gateway.inbox.team_routing import RoutingError, load_routing
    from gateway.journeys.model import JourneyError
    from gateway.journeys.registry import JourneyRegistry

    directory = flows_dir(args, settings)
    try:
        registry = FlowRegistry.from_directory(directory)
        routing = load_routing(directory)
        journeys = JourneyRegistry.load(directory / "journeys")
    except (FlowError, RoutingError) as exc:
        print(f"flows: {exc}", file=sys.stderr)
        return 1
    except JourneyError as exc:
        print(f"flows: {directory / 'journeys'}/{exc}", file=sys.stderr)
        return 1
    for flow in registry.current_versions():
        print(f"ok  {flow.name}  version {flow.version}  {len(flow.states)} states  ({flow.source})")
    if routing.source:
        print(f"ok  routing  version {routing.version}  {len(routing.rules)} rules  ({routing.source})")
    for journey in journeys.journeys.values():
        print(f"ok  journey {journey.name}  version {journey.version}  {len(journey.steps)} steps")
    return 0


def cmd_deploy(args, settings=None) -> int:
    """Validate the flows directory and make it current in every running gateway, no restart."""
    import asyncio

    from gateway.flows.deploy import DeployError, validate

    directory = flows_dir(args, settings)
    try:
        validate(directory)
    except DeployError as exc:
        print(f"flows: refused, nothing deployed: {exc}", file=sys.stderr)
        return 1
    if settings is None:
        from gateway.app.settings import load_settings

        settings = load_settings()
    from gateway.app.embedded import infrastructure

    with infrastructure(settings) as settings:
        result = asyncio.run(_deploy(settings, directory))
    print(f"deployed {result['deployment_id']}: " + ", ".join(
        [f"{n} {v}" for n, v in result["flows"].items()] + [f"journey {n} {v}" for n, v in result["journeys"].items()]))
    return 0


async def _deploy(settings, directory: Path) -> dict:
    from gateway.flows.deploy import deploy
    from gateway.infra import db
    from gateway.infra.redis_client import connect_small
    from gateway.pipeline.queue import Keys

    await db.migrate_dsn(settings.session_database_url, pooler=settings.database_pooler)
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2, pooler=settings.database_pooler)
    redis = connect_small(settings.redis_url, socket_connect_timeout=2)
    try:
        return await deploy(pool, redis, Keys(settings.redis_prefix), directory)
    finally:
        await redis.aclose()
        await pool.close()


def add_subparser(subparsers) -> argparse.ArgumentParser:
    flows = subparsers.add_parser("flows", help="test, draw and check conversation flows")
    sub = flows.add_subparsers(dest="flows_command", required=True)

    test = sub.add_parser("test", help="replay the transcript tests beside each flow")
    test.add_argument("name", nargs="?", help="only this flow")
    test.add_argument("--dir", help="flows directory (default: GATEWAY_FLOWS_DIR or ./flows)")
    test.set_defaults(func=cmd_test)

    draw = sub.add_parser("draw", help="print a Mermaid diagram of a flow (or write .mmd/.dot/.svg/.png)")
    draw.add_argument("name")
    draw.add_argument("--out", help="file to write; .svg/.png need Graphviz 'dot' on PATH")
    draw.add_argument("--engine", choices=("gateway", "transitions"), default="gateway",
                      help="our labelled diagram (default) or transitions' own Mermaid output")
    draw.add_argument("--dir")
    draw.set_defaults(func=cmd_draw)

    check = sub.add_parser("check", help="validate every flow, the routing file and the journeys")
    check.add_argument("--dir")
    check.set_defaults(func=cmd_check)

    deploy = sub.add_parser("deploy", help="validate and load flows, journeys and routing into every running gateway")
    deploy.add_argument("--dir")
    deploy.set_defaults(func=cmd_deploy)
    return flows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["flows", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args, None)


if __name__ == "__main__":
    sys.exit(main())
