"""Runtime plugin: the snooze timer handler, the survey's answers and the escalation router, in every process."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from gateway.domain import timers
from gateway.domain.conversation import SNOOZE_TIMER
from gateway.inbox import csat
from gateway.inbox.actions import wake_snoozed
from gateway.inbox.team_routing import TeamRouter, load_routing
from gateway.infra.assets import flows_dir

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime


async def setup(runtime: Runtime) -> None:
    runtime.timer_handlers.setdefault(SNOOZE_TIMER, timers.Batch(wake_snoozed))
    runtime.hooks.answers.append(functools.partial(csat.take_answer, settings=runtime.settings))
    router = TeamRouter(load_routing(flows_dir(runtime.settings.flows_dir)), settings=runtime.settings,
                        clock=runtime.clock)
    runtime.team_router = router
    runtime.hooks.escalated.append(router.on_escalated)
    runtime.hooks.deployed.append(router.reload)
