"""The journey engine: enrollment on events, steps run by durable timers, exits on goals.

I/O around the pure definitions (model), templates and guard math. Every entry point runs inside
a transaction somebody else opened and commits with it:
  - `on_event` (Hooks.event, with the stored event): goal/exit events end enrollments and cancel
    their pending timers at once; waits for that event resume; matching journeys enroll.
  - `fire_step` (timer kind "journey_step"): runs steps from the scheduled one until a wait (or a
    guard deferral) schedules the next timer; sends go through gateway.journeys.sending.
  - `fire_fallback` (timer kind "journey_fallback"): a nudge not delivered in time goes out on
    the next channel of the step's preference list.
  - `on_status` (Hooks.status): delivered/read recorded on the send, fallback cancelled;
    a failure pulls the fallback forward.
  - `on_inbound` (Hooks.inbound): a customer message marks the latest nudge of each of the
    contact's journeys as replied (clicked for a button tap) and resumes waits for "replied".

Each enrollment row is locked (FOR UPDATE) while it changes, and each scheduled step carries the
enrollment's `seq`: a timer whose seq is stale (the enrollment moved on) does nothing.
"""
from __future__ import annotations

import functools
import random
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from gateway.app.log import get_logger
from gateway.bot.turn import escalate
from gateway.channels.modes import routing_policy
from gateway.domain import consent, contacts, conversation, thread, timers
from gateway.domain.types import Channel
from gateway.journeys import guards
from gateway.journeys.model import (END, BranchStep, Case, EscalateStep, FlowStep, Journey, SendStep, SplitStep,
                                    UpdateStep, WaitStep, all_hold)
from gateway.journeys.registry import JourneyRegistry
from gateway.journeys.sending import (FALLBACK_TIMER, Contact, cancel_fallbacks, cancel_unsent, competing_priorities,
                                      deliver, load_contact, marketing_sent, record_skip, schedule_fallback)
from gateway.pipeline import processor

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

STEP_TIMER = "journey_step"
# Set (to a list) by a caller that wants to know why each journey did or did not start for the
# events it stores (the events API's ?debug=true); per task, so concurrent requests never mix.
ENTRY_TRACE: ContextVar[list | None] = ContextVar("journey_entry_trace", default=None)
CLICK_EVENT = "message_clicked"          # properties: {"message_id": <our message id>}
REPLIED = "replied"                      # pseudo event a "wait until event" may wait for
REPLY_WINDOW = timedelta(days=7)         # a reply counts for nudges sent within this window
MAX_HOPS = 200


def _trace(event, journey: str, reason: str | None) -> None:
    trace = ENTRY_TRACE.get()
    if trace is not None:
        trace.append({"event_id": event["id"], "journey": journey, "entered": reason is None, "reason": reason})


async def _enrolled(conn: asyncpg.Connection, contact_ids: list[int]) -> set[int]:
    """Those of `contact_ids` ever enrolled in a journey (the others have no nudge or wait to mark)."""
    return {r["contact_id"] for r in await conn.fetch(
        "SELECT DISTINCT contact_id FROM journey_enrollments WHERE contact_id = ANY($1::bigint[])", contact_ids)}


class JourneyEngine:
    def __init__(self, runtime: Runtime, registry: JourneyRegistry):
        self.runtime = runtime
        self.registry = registry
        self.route_policy = routing_policy(runtime.settings)

    @property
    def policy(self):
        return self.registry.policy

    def now(self) -> datetime:
        return self.runtime.clock.now()

    # -- hooks -----------------------------------------------------------------------------

    async def on_event(self, conn: asyncpg.Connection, event: asyncpg.Record, effects: thread.Effects) -> None:
        name, contact_id = event["name"], event["contact_id"]
        if name == CLICK_EVENT:
            await self._mark_clicked(conn, contact_id, (event["properties"] or {}).get("message_id"))
        await self._goals_and_exits(conn, event, effects)
        await self._resume_waits(conn, contact_id, name)
        entering = self.registry.entered_by(name)
        for journey in entering:
            reason = await self._enroll(conn, journey, event, effects)
            _trace(event, journey.name, reason)
        if ENTRY_TRACE.get() is not None:
            started_by_it = {j.name for j in entering}
            for journey in self.registry.journeys.values():
                if journey.name not in started_by_it:
                    _trace(event, journey.name, f"entered_by:{journey.entry.event}")

    async def on_inbound(self, turn) -> None:
        msg = turn.message
        content = msg["content"] or {}
        if msg["direction"] != "in" or msg["kind"] != "message" or content.get("auto_generated"):
            return
        if msg["channel"] in processor.KEYWORD_CHANNELS and consent.classify_keyword(msg["body"] or "") is not None:
            return      # STOP, START, HELP answer the compliance rules, not the nudge: not a reply
        conn, contact_id, now = turn.conn, turn.conversation["contact_id"], self.now()
        if turn.batch is not None and contact_id not in await turn.batch.once("journeys.enrolled", functools.partial(
                _enrolled, conn, turn.batch.contact_ids)):
            return      # never enrolled: no nudge to mark, no wait to resume (one look-up per batch)
        marked = await conn.fetch(
            """UPDATE journey_sends s SET replied_at = $2,
                   clicked_at = CASE WHEN $3 THEN coalesce(s.clicked_at, $2) ELSE s.clicked_at END
               FROM (SELECT DISTINCT ON (s2.enrollment_id) s2.id FROM journey_sends s2
                     JOIN journey_enrollments e ON e.id = s2.enrollment_id
                     WHERE e.contact_id = $1 AND s2.sent_at <= $2 AND s2.sent_at > $2 - $4::interval
                     ORDER BY s2.enrollment_id, s2.sent_at DESC, s2.id DESC) latest
               WHERE s.id = latest.id AND s.replied_at IS NULL RETURNING s.id""",
            contact_id, now, bool(content.get("reply_id")), REPLY_WINDOW)
        if marked:  # they answered: the nudge reached them, no need to try other channels
            await timers.cancel(conn, kind=FALLBACK_TIMER, conversation_id=turn.conversation_id)
        await self._resume_waits(conn, contact_id, REPLIED)

    async def on_status(self, conn: asyncpg.Connection, message: asyncpg.Record, status: str,
                        effects: thread.Effects) -> None:
        now = self.now()
        send = await conn.fetchrow(
            """UPDATE journey_sends SET
                   delivered_at = CASE WHEN $2 IN ('delivered', 'read') THEN coalesce(delivered_at, $3)
                                       ELSE delivered_at END,
                   read_at = CASE WHEN $2 = 'read' THEN coalesce(read_at, $3) ELSE read_at END,
                   failed_at = CASE WHEN $2 IN ('failed', 'undelivered') THEN coalesce(failed_at, $3)
                                    ELSE failed_at END
               WHERE message_id = $1 RETURNING *""", message["id"], status, now)
        if send is None:
            return
        if status in ("delivered", "read"):
            await cancel_fallbacks(conn, send["enrollment_id"], message["conversation_id"], send["id"])
        elif status in ("failed", "undelivered"):
            await timers.bring_forward(conn, now, kind=FALLBACK_TIMER, conversation_id=message["conversation_id"],
                                       ref_id=send["enrollment_id"], payload={"send_id": send["id"]})

    # -- timers ----------------------------------------------------------------------------

    async def fire_step(self, conn: asyncpg.Connection, timer: asyncpg.Record, effects: thread.Effects) -> None:
        p = timer["payload"]
        enr = await conn.fetchrow("SELECT * FROM journey_enrollments WHERE id = $1 FOR UPDATE", p["enrollment_id"])
        if enr is None or enr["status"] != "active" or enr["seq"] != p["seq"]:
            return  # left the journey, or moved on since this timer was scheduled
        journey = await self.registry.get(conn, enr["journey"], enr["version"])
        state = dict(enr)
        if state["waiting_event"]:  # a wait for an event timed out
            state.update(await conn.fetchrow(
                "UPDATE journey_enrollments SET waiting_event = NULL WHERE id = $1 RETURNING *", enr["id"]))
        step_id = p["step"]
        # waits count from when this step was due, so a timer fired late does not shift the plan
        due = min(timer["due_at"], self.now())
        for _ in range(MAX_HOPS):
            if step_id == END:
                await self._complete(conn, state, "holdout_window" if state["variant"] == "holdout" else "completed")
                return
            step_id = await self._run_step(conn, journey, state, journey.steps[step_id], due, effects)
            if step_id is None:
                return  # a timer was scheduled
        raise RuntimeError(f"journey {journey.name} made {MAX_HOPS} steps without waiting")

    async def fire_fallback(self, conn: asyncpg.Connection, timer: asyncpg.Record, effects: thread.Effects) -> None:
        send = await conn.fetchrow(
            """SELECT s.*, m.status AS message_status FROM journey_sends s JOIN messages m ON m.id = s.message_id
               WHERE s.id = $1 FOR UPDATE OF s""", timer["payload"]["send_id"])
        if send is None or send["state"] != "sent" or not send["remaining"] or send["delivered_at"] \
                or send["message_status"] in ("delivered", "read"):
            return
        enr = await conn.fetchrow("SELECT * FROM journey_enrollments WHERE id = $1 FOR UPDATE", send["enrollment_id"])
        if enr["status"] not in ("active", "completed"):
            return
        journey = await self.registry.get(conn, enr["journey"], enr["version"])
        step = journey.steps[send["step"]]
        contact = await load_contact(conn, enr["contact_id"])
        now = self.now()
        at = guards.next_allowed(now, contact.zone(self.policy), journey.quiet_hours)
        if at > now:
            await schedule_fallback(conn, enr, send["id"], at)
            return
        busy = await self._busy(conn, enr, now)
        if busy:
            await record_skip(conn, enr, step.id, "fallback_contact_busy", now, {"busy": busy})
            return
        await cancel_unsent(conn, [send["message_id"]], "superseded")
        await conn.execute("UPDATE journey_sends SET state = 'superseded' WHERE id = $1", send["id"])
        delivery = await deliver(conn, journey=journey, enrollment=enr, step=step,
                                 channels=[Channel(c) for c in send["remaining"]], attempt=send["attempt"] + 1,
                                 contact=contact, now=now, policy=self.policy, route_policy=self.route_policy,
                                 settings=self.runtime.settings, effects=effects)
        if delivery.send_id is None:
            await record_skip(conn, enr, step.id, f"fallback_{delivery.skip_reason}", now,
                              {"channels": delivery.unavailable, "after": send["channel"]})

    # -- enrollment ------------------------------------------------------------------------

    async def _enroll(self, conn, journey: Journey, event, effects) -> str | None:
        """Enter the journey; None when entered, else why not (for the events API's debug answer)."""
        props, now = event["properties"] or {}, self.now()
        missing = [r for r in journey.entry.require if props.get(r) in (None, "")]
        if missing:
            return f"missing_property:{missing[0]}"
        if journey.entry.max_age and now - event["occurred_at"] > journey.entry.max_age:
            return "event_too_old"
        contact = await load_contact(conn, event["contact_id"])
        if not all_hold(journey.entry.conditions, contact.context(props)):
            return "conditions_not_matched"
        reentry = journey.entry.reentry
        if reentry.policy != "always":
            last = await conn.fetchval(
                "SELECT max(entered_at) FROM journey_enrollments WHERE journey = $1 AND contact_id = $2",
                journey.name, contact.id)
            if last is not None and (reentry.policy == "never" or now - last < reentry.period):
                return f"reentry_{reentry.policy}"
        else:   # every event enters again: a run in progress makes way for the new one
            running = await conn.fetchrow(
                """SELECT * FROM journey_enrollments WHERE journey = $1 AND contact_id = $2 AND status = 'active'
                   FOR UPDATE""", journey.name, contact.id)
            if running is not None:
                await self._leave(conn, running, "exited", "reentered", effects)
        conversation_id = await conversation.for_contact(conn, contact.id)
        enr = await conn.fetchrow(
            """INSERT INTO journey_enrollments (journey, version, contact_id, conversation_id, priority,
                   trigger_event_id, data, entered_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (journey, contact_id) WHERE status = 'active' DO NOTHING RETURNING *""",
            journey.name, journey.version, contact.id, conversation_id, journey.priority, event["id"],
            {"event": props, "trigger": event["name"]}, now)
        if enr is None:
            return "already_in_journey"
        await self._schedule(conn, dict(enr), journey.first_step, now)
        effects.emit("journey.entered", journey=journey.name, enrollment_id=enr["id"], contact_id=contact.id,
                     conversation_id=conversation_id)
        return None

    async def _goals_and_exits(self, conn, event, effects) -> None:
        name, now = event["name"], self.now()
        rows = await conn.fetch(
            """SELECT * FROM journey_enrollments WHERE contact_id = $1
                 AND (status = 'active' OR (status = 'completed' AND exited_at > $2))
               ORDER BY id FOR UPDATE""", event["contact_id"], now - timedelta(days=90))
        context = None
        for enr in rows:
            journey = await self.registry.get(conn, enr["journey"], enr["version"])
            goal = journey.goal
            if goal is not None and goal.event == name:
                in_window = enr["status"] == "active" or (goal.within and now - enr["entered_at"] <= goal.within)
                if in_window:
                    context = context or (await load_contact(conn, event["contact_id"])).context(
                        event["properties"] or {})
                    if all_hold(goal.conditions, context):
                        await self._leave(conn, enr, "converted", f"goal:{name}", effects, event["id"])
                        continue
            if enr["status"] == "active" and name in journey.exit_events:
                await self._leave(conn, enr, "exited", f"event:{name}", effects)

    async def _leave(self, conn, enr, status: str, reason: str, effects, event_id: int | None = None) -> None:
        """Converted or exited: pending steps and fallbacks cancelled, unsent nudges withdrawn."""
        now = self.now()
        attributed = None
        if status == "converted" and enr["variant"] != "holdout":
            attributed = await conn.fetchval(
                "SELECT step FROM journey_sends WHERE enrollment_id = $1 ORDER BY sent_at DESC, id DESC LIMIT 1",
                enr["id"])
        await conn.execute(
            """UPDATE journey_enrollments SET status = $2::text, exit_reason = $3, exited_at = $4::timestamptz,
                   converted_at = CASE WHEN $2::text = 'converted' THEN $4::timestamptz END, conversion_event_id = $5,
                   attributed_step = $6, waiting_event = NULL, updated_at = now()
               WHERE id = $1""", enr["id"], status, reason, now, event_id, attributed)
        await timers.cancel(conn, kind=STEP_TIMER, conversation_id=enr["conversation_id"], ref_id=enr["id"])
        await cancel_fallbacks(conn, enr["id"], enr["conversation_id"])
        sent = [r["message_id"] for r in await conn.fetch(
            "SELECT message_id FROM journey_sends WHERE enrollment_id = $1", enr["id"])]
        await cancel_unsent(conn, sent, f"journey_{status}")
        await thread.add_event(conn, enr["conversation_id"], f"Journey {enr['journey']}: {status} ({reason})",
                               event=f"journey_{status}", author_type="journey",
                               details={"journey": enr["journey"], "enrollment_id": enr["id"], "reason": reason,
                                        "attributed_step": attributed})
        effects.emit(f"journey.{status}", journey=enr["journey"], enrollment_id=enr["id"],
                     conversation_id=enr["conversation_id"], reason=reason)

    async def _complete(self, conn, state: dict, reason: str) -> None:
        await conn.execute(
            """UPDATE journey_enrollments SET status = 'completed', exit_reason = $2, exited_at = $3,
                   waiting_event = NULL, updated_at = now() WHERE id = $1""", state["id"], reason, self.now())
        await timers.cancel(conn, kind=STEP_TIMER, conversation_id=state["conversation_id"], ref_id=state["id"])

    async def _resume_waits(self, conn, contact_id: int, name: str) -> None:
        rows = await conn.fetch(
            """SELECT * FROM journey_enrollments WHERE contact_id = $1 AND status = 'active'
                 AND waiting_event = $2 FOR UPDATE""", contact_id, name)
        for enr in rows:
            journey = await self.registry.get(conn, enr["journey"], enr["version"])
            wait = journey.steps[enr["data"]["wait_step"]]
            seen = sorted(set(enr["data"].get("events_seen", [])) | {name})
            await self._schedule(conn, dict(enr), wait.on_event, self.now(), data={"events_seen": seen})

    async def _schedule(self, conn, state: dict, step_id: str, due_at: datetime, *,
                        waiting_event: str | None = None, data: dict | None = None) -> None:
        """Make `step_id` the enrollment's next step, due at `due_at` (replacing any pending one)."""
        row = await conn.fetchrow(
            """UPDATE journey_enrollments SET step = $2, seq = seq + 1, waiting_event = $3,
                   data = data || $4::jsonb, updated_at = now() WHERE id = $1 RETURNING *""",
            state["id"], step_id, waiting_event, data or {})
        state.update(row)
        await timers.cancel(conn, kind=STEP_TIMER, conversation_id=row["conversation_id"], ref_id=row["id"])
        await timers.schedule(conn, kind=STEP_TIMER, due_at=due_at,
                              payload={"enrollment_id": row["id"], "step": step_id, "seq": row["seq"]},
                              conversation_id=row["conversation_id"], ref_id=row["id"],
                              dedupe_key=f"{STEP_TIMER}:{row['id']}:{row['seq']}")

    async def _mark_clicked(self, conn, contact_id: int, message_id) -> None:
        if isinstance(message_id, (int, str)) and str(message_id).isdigit():
            await conn.execute(
                """UPDATE journey_sends s SET clicked_at = coalesce(s.clicked_at, $3)
                   FROM journey_enrollments e WHERE s.message_id = $1 AND e.id = s.enrollment_id
                     AND e.contact_id = $2""", int(message_id), contact_id, self.now())

    # -- steps -----------------------------------------------------------------------------

    async def _run_step(self, conn, journey: Journey, state: dict, step, due: datetime, effects) -> str | None:
        """Run one step; returns the next step id, or None when a timer now carries on."""
        if isinstance(step, WaitStep):
            now = due
            if step.event:
                await self._schedule(conn, state, step.on_timeout, now + step.timeout, waiting_event=step.event,
                                     data={"wait_step": step.id})
            elif step.duration:
                await self._schedule(conn, state, step.next, now + step.duration)
            else:
                contact = await load_contact(conn, state["contact_id"])
                await self._schedule(conn, state, step.next,
                                     guards.next_time_of_day(now, contact.zone(self.policy), step.until))
            return None
        if isinstance(step, SendStep):
            return await self._send(conn, journey, state, step, effects)
        if isinstance(step, BranchStep):
            contact = await load_contact(conn, state["contact_id"])
            for case in step.cases:
                if await self._case_holds(conn, state, case, contact):
                    return case.goto
            return step.next
        if isinstance(step, SplitStep):
            return await self._split(conn, journey, state, step)
        if isinstance(step, UpdateStep):
            await contacts.merge_attributes(conn, state["contact_id"], dict(step.attributes))
            return step.next
        if isinstance(step, EscalateStep):
            await escalate(conn, await conversation.load(conn, state["conversation_id"]), reason=step.reason,
                           summary=step.summary, effects=effects, author_type="journey", team=step.team,
                           hooks=self.runtime.hooks)
            return step.next
        if isinstance(step, FlowStep):
            return await self._hand_to_flow(conn, journey, state, step, effects)
        raise TypeError(f"unknown step type {type(step).__name__}")

    async def _busy(self, conn, state, now: datetime) -> str | None:
        conv = await conn.fetchrow("SELECT mode, status, flow_state, last_inbound_at FROM conversations WHERE id = $1",
                                   state["conversation_id"])
        return guards.busy_reason(conv, now, idle_states=self.policy.flow_idle_states,
                                  flow_window=self.policy.flow_window)

    async def _send(self, conn, journey: Journey, state: dict, step: SendStep, effects) -> str | None:
        now, policy = self.now(), self.policy
        busy = await self._busy(conn, state, now)
        if busy:  # postpone while the contact talks to an agent or the bot, up to busy_max_wait
            since_raw = (state["data"].get("busy_since") or {}).get(step.id)
            since = datetime.fromisoformat(since_raw) if since_raw else now
            if now - since < policy.busy_max_wait:
                await self._schedule(conn, state, step.id, now + policy.busy_retry,
                                     data={"busy_since": {step.id: since.isoformat()}})
                return None
            await record_skip(conn, state, step.id, "contact_busy", now, {"busy": busy})
            return step.next
        contact = await load_contact(conn, state["contact_id"])
        tz = contact.zone(policy)
        allowed = guards.next_allowed(now, tz, journey.quiet_hours)
        if allowed > now:  # quiet hours: not a skip, the step waits for the next allowed minute
            await self._schedule(conn, state, step.id, allowed)
            return None
        if journey.is_marketing and policy.frequency_cap is not None:
            start, end = guards.local_day_bounds(now, tz)
            sent_today = await marketing_sent(conn, contact.id, start, end)
            competing = [(name, prio) for name, prio in await competing_priorities(conn, state, end)
                         if self._is_marketing(name)]
            verdict = guards.frequency_verdict(sent_today, policy.frequency_cap, journey.priority,
                                               [prio for _, prio in competing])
            if verdict:
                await record_skip(conn, state, step.id, verdict, now, {
                    "sent_today": sent_today, "cap": policy.frequency_cap, "priority": journey.priority,
                    "yielded_to": [name for name, prio in competing if prio > journey.priority]})
                return step.next
        delivery = await deliver(conn, journey=journey, enrollment=state, step=step, channels=list(step.channels),
                                 attempt=0, contact=contact, now=now, policy=policy,
                                 route_policy=self.route_policy, settings=self.runtime.settings, effects=effects)
        if delivery.send_id is None:
            await record_skip(conn, state, step.id, delivery.skip_reason, now, {"channels": delivery.unavailable})
        return step.next

    def _is_marketing(self, journey_name: str) -> bool:
        current = self.registry.current(journey_name)
        return current is None or current.is_marketing

    async def _case_holds(self, conn, state: dict, case: Case, contact: Contact) -> bool:
        if case.variant is not None and state["variant"] != case.variant:
            return False
        if case.event is not None and case.event not in state["data"].get("events_seen", []):
            return False
        if case.conditions and not all_hold(case.conditions, contact.context(state["data"].get("event", {}))):
            return False
        if case.happened is not None:
            row = await conn.fetchrow(
                """SELECT bool_or(m.status IN ('sent', 'delivered', 'read')) AS sent,
                          bool_or(s.delivered_at IS NOT NULL OR m.status IN ('delivered', 'read')) AS delivered,
                          bool_or(s.read_at IS NOT NULL OR m.status = 'read') AS read,
                          bool_or(s.replied_at IS NOT NULL) AS replied,
                          bool_or(s.clicked_at IS NOT NULL) AS clicked,
                          bool_or(m.status IN ('failed', 'undelivered')) AS failed
                   FROM journey_sends s JOIN messages m ON m.id = s.message_id
                   WHERE s.enrollment_id = $1 AND ($2::text IS NULL OR s.step = $2)""",
                state["id"], case.of_step)
            if case.happened == "failed":
                return bool(row["failed"]) and not row["sent"]
            return bool(row[case.happened])
        return True

    async def _split(self, conn, journey: Journey, state: dict, step: SplitStep) -> str | None:
        # Seeded by enrollment and step: a step that is redone (worker killed) picks the same arm.
        point = random.Random(f"{state['id']}:{step.id}").random() * sum(a.weight for a in step.arms)
        arm = step.arms[-1]
        for candidate in step.arms:
            if point < candidate.weight:
                arm = candidate
                break
            point -= candidate.weight
        variants = {**state["data"].get("variants", {}), step.id: arm.variant}
        state.update(await conn.fetchrow(
            """UPDATE journey_enrollments SET variant = $2, data = data || $3::jsonb, updated_at = now()
               WHERE id = $1 RETURNING *""", state["id"], arm.variant, {"variants": variants}))
        if arm.holdout:  # receives nothing; stays enrolled so its conversions can be compared
            window = journey.goal.within if journey.goal and journey.goal.within else self.policy.holdout_window
            await self._schedule(conn, state, END, self.now() + window)
            return None
        return arm.goto

    async def _hand_to_flow(self, conn, journey: Journey, state: dict, step: FlowStep, effects) -> str:
        if not await conversation.hand_to_flow(conn, state["conversation_id"], step.flow, step.state):
            await record_skip(conn, state, step.id, "agent_conversation", self.now(), {"flow": step.flow})
            return step.next
        await thread.add_event(conn, state["conversation_id"],
                               f"Journey {journey.name} handed the conversation to flow {step.flow} ({step.state})",
                               event="flow_handoff", author_type="journey",
                               details={"journey": journey.name, "flow": step.flow, "state": step.state,
                                        "enrollment_id": state["id"]})
        effects.emit("conversation.updated", conversation_id=state["conversation_id"], flow=step.flow)
        return step.next
