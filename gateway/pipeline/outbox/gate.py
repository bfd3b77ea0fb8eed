"""Which of our senders may take more work now: pauses, 5xx back-off and in-flight slots.

One `SenderGate` per outbox process. A provider's 429 (or 503 with Retry-After) pauses that sender
whatever the rate-limit settings: the pause is kept here and, through the rate limiter, in Redis
so every process honours it. A run of transient failures (5xx, timeouts) backs the sender off a
little longer each time, and a success ends it. Slots bound the sends in flight per sender, so a
provider that hangs holds at most its own slots and never another channel's.

The number of slots adapts to the provider's latency (throughput is slots / latency): while the
sender has more work waiting than slots (its last claim was full), each success adds a slot, up to
`ceiling`, so a slow provider gets more in flight, doubling per round trip; a throttle or transient
failure halves the extra slots back toward `concurrency`, the floor set by the operator.
"""
from __future__ import annotations

import time
from collections import defaultdict

STORM_THRESHOLD = 10       # transient failures in a row before a sender backs off
STORM_MAX_PAUSE = 30.0


class SenderGate:
    def __init__(self, concurrency: int, ceiling: int | None = None, *, clock=time.monotonic):
        self.concurrency = concurrency
        self.ceiling = max(ceiling or concurrency, concurrency)
        self.clock = clock
        self.in_flight: dict[str, int] = defaultdict(int)
        self.limit: dict[str, float] = defaultdict(lambda: float(concurrency))
        self.backlogged: dict[str, bool] = defaultdict(bool)   # its last claim was full
        self._paused_until: dict[str, float] = {}
        self._failures_in_row: dict[str, int] = defaultdict(int)

    def pause(self, key: str, seconds: float) -> None:
        until = self.clock() + max(seconds, 0.0)
        self._shrink(key)
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    def paused_for(self, key: str) -> float:
        """Seconds this sender stays paused (0 when it may send)."""
        return max(self._paused_until.get(key, 0.0) - self.clock(), 0.0)

    def free(self, key: str) -> int:
        return 0 if self.paused_for(key) else max(int(self.limit[key]) - self.in_flight[key], 0)

    def started(self, key: str) -> None:
        self.in_flight[key] += 1

    def ended(self, key: str) -> None:
        self.in_flight[key] -= 1

    def succeeded(self, key: str) -> None:
        self._failures_in_row[key] = 0
        if self.backlogged[key]:
            self.limit[key] = min(self.limit[key] + 1, float(self.ceiling))

    def _shrink(self, key: str) -> None:
        self.limit[key] = self.concurrency + (self.limit[key] - self.concurrency) / 2

    def failed_transiently(self, key: str) -> float:
        """Count a transient failure; returns the back-off pause it starts (0 below the threshold)."""
        self._failures_in_row[key] += 1
        self._shrink(key)
        over = self._failures_in_row[key] - STORM_THRESHOLD
        if over < 0:
            return 0.0
        pause = min(2.0 ** min(over, 10), STORM_MAX_PAUSE)
        self.pause(key, pause)
        return pause
