"""Micro-benchmark of the flow engine's decision cost and of what it keeps per conversation.

    python -m gateway.flows.bench [--turns N] [--conversations N]

Per-turn cost: intent matching + the transition on the shared machine + state entry, with the
business API action swapped for a pure stand-in, so no I/O is measured. Memory: tracemalloc (and
RSS when psutil is installed) while turns are driven for many distinct conversation states that the
caller holds and drops, as the worker does after writing them to PostgreSQL. Also shown: what one
machine costs to build, i.e. what a machine per conversation would cost.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

from transitions import Machine

from gateway.flows.actions import ActionContext, ActionRegistry
from gateway.flows.engine import ConversationState, Engine, TurnInput, WouldWait, finish_now
from gateway.flows.loader import FlowRegistry
from gateway.flows.machine import build_machine

MESSAGES = ("hi", "1", "where is my order", "2", "how do i retrun something", "blorp", "thanks",
            "second", "XY-12345", "cancel", "can i pay with paypal", "no thanks")
STATES = ("menu", "ask_order", "faq", "anything_else")


def _drive(coro):
    """Run a coroutine that never suspends (no I/O) without an event loop, to time only the engine."""
    try:
        return finish_now(coro)
    except WouldWait:
        raise RuntimeError("the benchmarked turn tried to do I/O") from None


def _pure_order_lookup(call) -> None:
    call.slots["order"] = {"status": "shipped", "eta": "2024-05-08"}


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def _machines() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Machine))


def run_decision_bench(n_turns: int = 20_000, n_conversations: int = 100_000, flows_dir: str | Path | None = None,
                       flow: str = "support") -> dict:
    """Returns timing (µs per turn: mean, p50, p90, p99, p99.9, max) and memory figures; see the module
    docstring."""
    from gateway.infra.assets import shipped_flows_dir

    registry = FlowRegistry.from_directory(flows_dir or shipped_flows_dir())
    actions = ActionRegistry.default()
    actions.register("http_get_order_status", _pure_order_lookup)
    engine = Engine(registry, actions)
    definition = registry.get(flow)
    ctx = ActionContext()
    now = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)
    inputs = [TurnInput(text=m, now=now) for m in MESSAGES]
    states = [ConversationState(flow, definition.version, s, {}) for s in STATES]

    def one_turn(i: int):
        return _drive(engine.turn(states[i % len(states)], inputs[i % len(inputs)], ctx))

    for i in range(max(200, len(inputs) * len(states) * 20)):      # warm-up: every (state, message) pair
        one_turn(i)
    collections = [0, 0, 0]         # garbage collections while timing (a cause of tail latency), by generation

    def count_gc(phase: str, info: dict) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    samples = [0.0] * n_turns       # preallocated: the list itself must not allocate while timing
    perf_counter = time.perf_counter
    gc.callbacks.append(count_gc)
    try:
        for i in range(n_turns):
            start = perf_counter()
            one_turn(i)
            samples[i] = (perf_counter() - start) * 1e6
    finally:
        gc.callbacks.remove(count_gc)
    samples.sort()

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * q))]

    gc.collect()
    machines_before = _machines()
    rss_before = _rss()
    tracemalloc.start()
    checkpoint = max(1, min(1_000, n_conversations // 10))
    after_first = None
    for i in range(n_conversations):
        conv = ConversationState(flow, definition.version, STATES[i % len(STATES)], {"n": i})
        result = _drive(engine.turn(conv, inputs[i % len(inputs)], ctx))
        del conv, result            # the caller writes the result to PostgreSQL and forgets it
        if i + 1 == checkpoint:
            gc.collect()
            after_first = tracemalloc.get_traced_memory()[0]
    gc.collect()
    after_all, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _rss()
    machines_after = _machines()

    tracemalloc.start()
    build_start = time.perf_counter()
    machine = build_machine(definition)
    build_ms = (time.perf_counter() - build_start) * 1e3
    machine_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del machine

    return {
        "turns": n_turns,
        "turn_us_mean": statistics.fmean(samples),
        "turn_us_p50": samples[len(samples) // 2],
        "turn_us_p90": pct(0.90),
        "turn_us_p99": pct(0.99),
        "turn_us_p999": pct(0.999),
        "turn_us_max": samples[-1],
        "gc_collections": tuple(collections),
        "conversations": n_conversations,
        "traced_bytes_after_first": after_first,
        "traced_bytes_after_all": after_all,
        "growth_bytes_per_conversation": (after_all - after_first) / max(1, n_conversations - checkpoint),
        "traced_peak_bytes": peak,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "machines_before": machines_before,
        "machines_after": machines_after,
        "one_machine_build_ms": build_ms,
        "one_machine_bytes": machine_bytes,
    }


def format_results(r: dict) -> str:
    def mb(value):
        return "n/a" if value is None else f"{value / 1e6:.1f} MB"
    return "\n".join([
        f"flow decision cost over {r['turns']} turns: mean {r['turn_us_mean']:.1f} µs, "
        f"p50 {r['turn_us_p50']:.1f} µs, p90 {r['turn_us_p90']:.1f} µs, p99 {r['turn_us_p99']:.1f} µs, "
        f"p99.9 {r['turn_us_p999']:.1f} µs, max {r['turn_us_max']:.1f} µs "
        f"(garbage collections while timing, gen 0/1/2: {'/'.join(map(str, r['gc_collections']))})",
        f"{r['conversations']} distinct conversations: traced memory {r['traced_bytes_after_first'] / 1e3:.1f} kB "
        f"after the first ones, {r['traced_bytes_after_all'] / 1e3:.1f} kB after all "
        f"({r['growth_bytes_per_conversation']:.3f} bytes per conversation); RSS {mb(r['rss_before_bytes'])} -> "
        f"{mb(r['rss_after_bytes'])}",
        f"transitions machines alive: {r['machines_before']} before, {r['machines_after']} after",
        f"one machine costs {r['one_machine_build_ms']:.2f} ms and {r['one_machine_bytes'] / 1e3:.0f} kB to build "
        "(what a machine per conversation would cost each time)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    print(format_results(run_decision_bench(args.turns, args.conversations, args.dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
