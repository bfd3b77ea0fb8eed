"""The bot: runs a conversation's turn through its flow and writes what the turn decided.

One FlowRegistry (one transitions machine per flow version) serves every conversation. A
conversation's flow name, version, state and slots live in `conversations` (flow_data holds the
engine's full state) and are attached only while its message is processed. Every flow version a
conversation may be on is stored in `flow_versions`, so after a deploy that changes a flow,
conversations in progress continue on the version they started with.

Everything a turn decides (state, replies, timers, attributes, labels, events, escalation) is
written in the worker's transaction, together with the "processed" mark; the conversation row
through the turn's draft, once (`gateway.domain.conversation`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import asyncpg

from gateway.app.log import get_logger
from gateway.bot.turn import NoOutsideCalls, OutsideCallNeeded, Turn, escalate, send_bot_reply
from gateway.domain import contacts, conversation, thread, timers
from gateway.domain.conversation import Mode
from gateway.domain.events import emit_event
from gateway.domain.types import Channel, Effects
from gateway.flows.actions import ActionContext, ActionRegistry
from gateway.flows.engine import ConversationState, Engine, Reply, TurnInput, TurnResult, WouldWait, finish_now
from gateway.flows.loader import FlowRegistry
from gateway.inboxes import store as inboxes
from gateway.infra.assets import flows_dir

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

FLOW_TIMER = "flow_timeout"


def parse_channel_flows(spec: str) -> dict[str, str]:
    """"sms=support,email=email_support" -> {"sms": "support", "email": "email_support"}."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        channel, _, flow = part.partition("=")
        out[Channel(channel.strip()).value] = flow.strip()
    return out


class FlowHandler:
    def __init__(self, runtime: Runtime, registry: FlowRegistry, engine: Engine):
        self.rt = runtime
        self.registry = registry
        self.engine = engine

    # -- processing a customer message ----------------------------------------------------------
    async def handle(self, turn: Turn) -> None:
        conv, msg = turn.conversation, turn.message
        content = msg["content"] or {}
        attributes = turn.contact_attributes
        if attributes is None:
            attributes = await self._attributes(turn.conn, conv["contact_id"])
        inp = TurnInput(text=msg["body"] or "", channel=Channel(msg["channel"]), reply_id=content.get("reply_id"),
                        now=self.rt.clock.now(), attributes=attributes)
        ctx = self._context(conv, inp)
        if not turn.outside_calls:
            ctx.session = NoOutsideCalls()
        state = await self._state(turn.conn, conv)
        if state is not None and turn.new_episode:
            state = state.new_episode()
        if state is None:   # a new conversation starts on its inbox's flow, when it has one
            facts = await turn.route_facts()
            if facts is not None:   # a batch read every inbox
                inbox = facts.inboxes.get(msg["inbox_id"])
                flow_name = inbox["flow"] if inbox is not None else None
            else:
                flow_name = await inboxes.inbox_flow(turn.conn, msg["inbox_id"])
            if flow_name and not self.registry.has(flow_name):
                flow_name = None
            decide = self.engine.begin(inp, ctx, flow_name=flow_name)
        else:
            decide = self.engine.turn(state, inp, ctx)
        if turn.outside_calls:
            result = await decide
        else:   # a batched turn is decided at once, or redone on its own when it would wait
            try:
                result = finish_now(decide)
            except WouldWait:
                raise OutsideCallNeeded("the flow's turn waited") from None
        await self.apply(turn.conn, turn.draft, result, turn.effects, facts=await turn.route_facts(),
                         defer=turn.batch.writes.add if turn.batch is not None else None)

    def _context(self, conv, inp: TurnInput) -> ActionContext:
        settings = {"business_api_base": self.rt.settings.business_api_base, "http_timeout": 5}
        return ActionContext(session=self.rt.http, settings=settings, attributes=inp.attributes,
                             conversation_id=conv["id"], business_api_token=self.rt.settings.business_api_token)

    @staticmethod
    async def _attributes(conn: asyncpg.Connection, contact_id: int) -> dict:
        return dict(await conn.fetchval("SELECT attributes FROM contacts WHERE id = $1", contact_id) or {})

    async def _state(self, conn: asyncpg.Connection, conv) -> ConversationState | None:
        data = conv["flow_data"] or {}
        if conv["flow_name"] and conv["flow_state"] and not conv["flow_version"]:
            # placed here by someone else (a journey's hand-off step): the current version, that state
            if not self.registry.has(conv["flow_name"]):
                return None
            flow = self.registry.get(conv["flow_name"])
            if conv["flow_state"] not in flow.states:
                log.warning("hand-off to an unknown flow state; starting the flow", flow=flow.name,
                            state=conv["flow_state"])
                return None
            return ConversationState(flow.name, flow.version, conv["flow_state"])
        if not conv["flow_name"] or not data.get("state"):
            return None
        state = ConversationState.from_dict(data)
        if not self.registry.has(state.flow, state.version):
            text = await conn.fetchval("SELECT definition FROM flow_versions WHERE name = $1 AND version = $2",
                                       state.flow, state.version)
            if text is None:  # should not happen: every version a conversation uses is stored
                log.warning("flow version missing; restarting the conversation's flow",
                            flow=state.flow, version=state.version)
                return None
            self.registry.add_version(state.flow, text)
        return state

    # -- writing a turn's decisions ------------------------------------------------------------
    async def apply(self, conn: asyncpg.Connection, draft: conversation.Draft, result: TurnResult,
                    effects: Effects, facts: thread.RouteFacts | None = None,
                    defer: Callable[[tuple[str, tuple]], None] | None = None) -> None:
        """Write a turn's result: the row's changes go into `draft` (written by whoever owns it, or
        before anything else here needs the row written: a business event, an escalation). `facts`:
        what routing the replies reads, read by the turn's batch (the replies go first: nothing
        here changes them before); `defer`: the batch's, which runs the timers' statement with
        those of the other turns at the round's end."""
        conv, cid = draft.view, draft.id
        state = result.state
        if result.ended:
            conversation.save_flow_state(draft)
        else:
            conversation.save_flow_state(draft, state.flow, state.version, state.state, state.to_dict())
        for reply in _one_mail_per_turn(result.replies, conv["last_inbound_channel"]):
            await send_bot_reply(conn, cid, reply.text, settings=self.rt.settings, effects=effects,
                                 buttons=reply.buttons, button_label=reply.button_label, draft=draft,
                                 facts=facts)
        now = self.rt.clock.now()
        replaced = sorted(set(result.cancel_timers) | {t.name for t in result.timers})
        if replaced:
            statement = timers.replace_statement(kind=FLOW_TIMER, conversation_id=cid, payload={"name": replaced},
                                                 timers=[(now + t.delay, {"name": t.name, "flow": state.flow,
                                                                          "version": state.version})
                                                         for t in result.timers])
            if defer is not None:
                defer(statement)
            else:
                await conn.execute(statement[0], *statement[1])
        if result.attribute_updates:
            await contacts.merge_attributes(conn, conv["contact_id"], dict(result.attribute_updates))
        if result.tags:
            conversation.add_labels(draft, result.tags)
        if result.events:
            await draft.flush(conn)     # the event's hooks write the thread themselves
        for name, properties in result.events:
            await self._emit(conn, conv["contact_id"], name, dict(properties), effects)
        if result.escalation is not None:
            esc = result.escalation
            await escalate(conn, draft, reason=esc.reason, summary=esc.summary, effects=effects, team=esc.team,
                           out_of_hours_said=esc.out_of_hours, hooks=self.rt.hooks)

    async def _emit(self, conn, contact_id: int, name: str, properties: dict, effects) -> None:
        await emit_event(conn, self.rt, contact_id, name, properties, effects, source="flow")

    async def reload(self, conn: asyncpg.Connection, manifest: dict) -> None:
        """A deployment: its flow versions become current for conversations that start from now on."""
        for name, version in (manifest.get("flows") or {}).items():
            text = await conn.fetchval("SELECT definition FROM flow_versions WHERE name = $1 AND version = $2",
                                       name, version)
            if text is None:
                log.warning("deployed flow version not stored", flow=name, version=version)
                continue
            self.registry.add_version(name, text, current=True)

    # -- timers and hand-back ------------------------------------------------------------------
    async def on_timer(self, conn: asyncpg.Connection, timer, effects: Effects) -> None:
        """A flow timeout fired ("no reply in 10 minutes"): run the turn, unless an agent owns it now."""
        cid = timer["conversation_id"]
        await conn.execute("SELECT pg_advisory_xact_lock($1)", cid)  # serialize with message processing
        draft = await conversation.load(conn, cid)
        if draft is None or draft.view["mode"] != Mode.BOT:
            return
        conv = draft.view
        state = await self._state(conn, conv)
        if state is None or state.flow != timer["payload"].get("flow"):
            return
        inp = TurnInput(event=f"timeout:{timer['payload']['name']}", now=self.rt.clock.now(),
                        channel=Channel(conv["last_inbound_channel"]) if conv["last_inbound_channel"] else None,
                        attributes=await self._attributes(conn, conv["contact_id"]))
        result = await self.engine.turn(state, inp, self._context(conv, inp))
        await self.apply(conn, draft, result, effects)
        await draft.flush(conn)

    async def hand_back(self, conn: asyncpg.Connection, conversation_id: int, state_name: str,
                        effects: Effects, flow_name: str | None = None) -> None:
        """An agent returns the conversation to the bot at `state_name` (FlowError if unknown)."""
        draft = await conversation.load(conn, conversation_id, lock=True)
        conv = draft.view
        current = await self._state(conn, conv)
        if current is None or (flow_name and flow_name != current.flow):
            flow = self.registry.get(flow_name or self.registry.default_flow)
            current = ConversationState(flow.name, flow.version, flow.start)
        channel = Channel(conv["last_inbound_channel"]) if conv["last_inbound_channel"] else None
        result = self.engine.resume_at(current, state_name, now=self.rt.clock.now(), channel=channel)
        await conversation.to_bot(conn, draft)
        await thread.add_event(conn, conversation_id, f"Handed back to the bot at {state_name}",
                               event="handed_back", details={"flow": current.flow, "state": state_name},
                               draft=draft)
        await self.apply(conn, draft, result, effects)
        await draft.flush(conn)
        effects.emit("conversation.updated", conversation_id=conversation_id, mode=Mode.BOT.value)


def _one_mail_per_turn(replies: tuple[Reply, ...], channel: str | None) -> tuple[Reply, ...]:
    """On email a turn's replies ("your order shipped", "anything else?") go as one mail, not one each."""
    if channel != Channel.EMAIL.value or len(replies) < 2:
        return replies
    with_buttons = [r for r in replies if r.buttons]
    last = with_buttons[-1] if with_buttons else replies[-1]
    return (Reply("\n\n".join(r.text for r in replies), last.buttons, last.button_label),)


async def store_versions(pool: asyncpg.Pool, registry: FlowRegistry) -> None:
    """Keep every current flow version's text, so conversations can always resume on it."""
    async with pool.acquire() as conn:
        for flow in registry.current_versions():
            await conn.execute(
                """INSERT INTO flow_versions (name, version, definition) VALUES ($1, $2, $3)
                   ON CONFLICT (name, version) DO NOTHING""", flow.name, flow.version, flow.text)


def build_flow_handler(runtime: Runtime) -> FlowHandler:
    s = runtime.settings
    registry = FlowRegistry.from_directory(flows_dir(s.flows_dir), default_flow=s.default_flow,
                                           channel_flows=parse_channel_flows(s.channel_flows))
    handler = FlowHandler(runtime, registry, Engine(registry, ActionRegistry.default()))
    runtime.timer_handlers[FLOW_TIMER] = handler.on_timer
    runtime.hooks.deployed.append(handler.reload)
    runtime.flow_handler = handler
    return handler
