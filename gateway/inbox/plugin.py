"""Runtime plugin: the snooze timer handler, known in every process that fires timers."""
from __future__ import annotations

from gateway.inbox.actions import SNOOZE_TIMER, wake_snoozed


async def setup(runtime) -> None:
    runtime.timer_handlers.setdefault(SNOOZE_TIMER, wake_snoozed)
