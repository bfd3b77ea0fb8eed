"""Writes of concurrent sends carried together: one round trip for every send that is ready.

Each send task `submit`s its item and waits; the items submitted in the same event-loop turn (and
while the previous round trip was running) are written by one call of `write`, which returns the
keys it wrote. A failing batch of several items is retried item by item, so one bad item (or a
deadlock with another transaction) fails only its own send.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

Item = TypeVar("Item")


class Coalescer(Generic[Item]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[set]], key: Callable[[Item], Hashable]):
        self.write = write
        self.key = key
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self.round_trips = 0

    async def submit(self, item: Item) -> bool:
        """Write `item` with whatever else is waiting; True when `write` reported it written."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        await asyncio.sleep(0)   # let the sends finishing in this loop turn join
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                self.round_trips += 1
                written = await self.write([item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc=exc)
                    continue
                for item, future in batch:   # one by one: only the bad item fails
                    try:
                        self.round_trips += 1
                        _settle(future, result=self.key(item) in await self.write([item]))
                    except Exception as one_exc:
                        _settle(future, exc=one_exc)
                continue
            for item, future in batch:
                _settle(future, result=self.key(item) in written)


def _settle(future: asyncio.Future, *, result: bool = False, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
