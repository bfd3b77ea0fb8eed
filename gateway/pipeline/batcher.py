"""Group commit for ingest: concurrent webhooks share one transaction, nobody is answered early.

Each request hands its message to the batcher and waits for its own result. At most
`max_inflight` transactions run at once; whatever arrives meanwhile forms the next batch, so at low
load a message commits alone (no added latency) and under load many share one commit and one round
trip (the `gateway_ingest` SQL function). A request's future resolves only after the commit, so a
2xx still means "durable in PostgreSQL". Items arrive checked and cleaned (`ingest_item`); should
the database still refuse a batch, each of its items is stored alone, so only the bad one fails. Items are sorted by address so concurrent batches lock
conversations in the same order (no deadlocks between batches of one process); a deadlock with
another process's batch is retried.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from gateway.app.log import get_logger
from gateway.domain.inputs import InputError
from gateway.infra.db import STORAGE_REFUSED
from gateway.pipeline.ingest import IngestResult, ingest_items

log = get_logger(__name__)


class IngestBatcher:
    """Group commit of `ingest_item`s; `committed` gets the conversations with new messages once each
    commit has been answered (intake passes its enqueue, which never raises)."""

    def __init__(self, pool: asyncpg.Pool, committed: Callable[[Sequence[int]], Awaitable[None]], *,
                 max_batch: int = 200, max_inflight: int = 2, retries: int = 2):
        # Two in flight, not four: every transaction costs 1-2 ms of CPU (HTTP process and
        # PostgreSQL) whatever its size, and a free slot starts a batch with whatever arrived since
        # the last one started, so more slots make smaller batches (quick bench at 16 concurrent
        # webhooks: 0.3 transactions and 1.1-1.3 ms CPU per webhook with four, 0.2 and 0.9-1.1 ms with
        # two, 0.1 and 0.7-0.8 ms with one); the second slot keeps ingest going while one batch waits
        # on a row lock.
        self.pool = pool
        self.committed = committed
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.retries = retries
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0
        self.items = 0

    async def submit(self, item: dict) -> IngestResult:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._flush_more()
        return await asyncio.shield(fut)

    def _flush_more(self) -> None:
        while self._pending and self._inflight < self.max_inflight:
            batch = self._pending[:self.max_batch]
            del self._pending[:len(batch)]
            self._inflight += 1
            task = asyncio.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        try:
            order = sorted(range(len(batch)), key=lambda i: (batch[i][0]["kind"], batch[i][0]["address"]))
            items = [batch[i][0] for i in order]
            try:
                results: list[IngestResult | Exception] = list(await self._store(items))
            except STORAGE_REFUSED as exc:
                # One item the database refuses must not fail the others: store each alone.
                log.warning("ingest batch refused; retrying item by item", size=len(items),
                            error=type(exc).__name__)
                results = [await self._store_alone(item) for item in items]
            self.batches += 1
            self.items += len(items)
            # committed: answer now; the enqueue only wakes a worker (the sweeper finds what it misses)
            for position, result in zip(order, results):
                fut = batch[position][1]
                if not fut.done():
                    if isinstance(result, Exception):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
            fresh = [r.conversation_id for r in results if isinstance(r, IngestResult) and not r.duplicate]
            if fresh:
                await self.committed(fresh)
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("ingest cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight -= 1
            self._flush_more()

    async def _store(self, items: list[dict]) -> list[IngestResult]:
        for attempt in range(self.retries + 1):
            try:
                # One statement is one transaction: committed (WAL flushed) when it returns,
                # one round trip instead of BEGIN + statement + COMMIT.
                async with self.pool.acquire(timeout=5) as conn:
                    return await ingest_items(conn, items)
            except asyncpg.DeadlockDetectedError:
                if attempt == self.retries:
                    raise
                log.info("ingest batch deadlocked with another process; retrying", size=len(items))
        raise AssertionError("unreachable")

    async def _store_alone(self, item: dict) -> IngestResult | Exception:
        try:
            return (await self._store([item]))[0]
        except InputError as exc:
            return exc

    async def close(self) -> None:
        while self._tasks or self._pending:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                self._flush_more()
                await asyncio.sleep(0)
