"""What agents do to a conversation. Each function runs inside the caller's transaction, writes
the thread event and the audit entry, and records the realtime events in `effects`."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.domain import conversation, routing, thread
from gateway.domain.auth import Principal
from gateway.domain.conversation import Status
from gateway.domain.types import Attachment, Channel
from gateway.inbox import Conflict, Invalid
from gateway.inbox.scope import Scope, visible_conversation
from gateway.inboxes import InboxRefused
from gateway.inboxes import store as inboxes

TYPING_TTL = 10     # seconds an agent's "typing" shows without a refresh


@dataclass(frozen=True)
class Actor:
    """Who acts: the agent behind the token when there is one."""

    role: str
    token_id: int | None
    agent_id: int | None
    name: str

    @classmethod
    def of(cls, principal: Principal) -> "Actor":
        return cls(principal.role, principal.token_id, principal.agent_id, principal.name)

    @property
    def key(self) -> str:
        """Whose idempotency keys: one namespace per token (the bootstrap admin shares one)."""
        return f"token:{self.token_id}" if self.token_id is not None else "bootstrap-admin"


async def audit(conn: asyncpg.Connection, actor: Actor, action: str, *, conversation_id: int | None = None,
                contact_id: int | None = None, details: dict | None = None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_type, actor_id, action, conversation_id, contact_id, details)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        actor.role, actor.agent_id if actor.agent_id is not None else actor.token_id, action,
        conversation_id, contact_id, {"actor": actor.name, **(details or {})})


async def audit_page(conn: asyncpg.Connection, *, before: int, limit: int, conversation_id: int | None = None,
                     contact_id: int | None = None) -> list[dict]:
    """Audit entries with id < before, newest first, at most `limit`, optionally of one conversation
    and/or one contact."""
    args: list = [before, limit]
    where = ["id < $1"]
    for name, value in (("conversation_id", conversation_id), ("contact_id", contact_id)):
        if value is not None:
            args.append(value)
            where.append(f"{name} = ${len(args)}")
    rows = await conn.fetch(
        f"""SELECT id, actor_type, actor_id, action, conversation_id, contact_id, details, created_at
            FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT $2""", *args)
    return [dict(r) for r in rows]


async def _event(conn, actor: Actor, conversation_id: int, text: str, event: str, **details) -> None:
    await thread.add_event(conn, conversation_id, text, event=event, details=details,
                           author_type="agent", author_id=actor.agent_id)


async def agent_name(conn: asyncpg.Connection, agent_id: int) -> str:
    name = await conn.fetchval("SELECT name FROM agents WHERE id = $1 AND deactivated_at IS NULL", agent_id)
    if name is None:
        raise Invalid("unknown_agent", f"no active agent with id {agent_id}")
    return name


async def assign(conn, scope: Scope, actor: Actor, conversation_id: int, agent_id: int,
                 effects: thread.Effects, *, event: str = "assigned") -> None:
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    name = await agent_name(conn, agent_id)
    await conversation.assign(conn, conversation_id, agent_id)
    await conversation.take_over(conn, conv, "assigned")
    await _event(conn, actor, conversation_id, f"Assigned to {name} by {actor.name}", event,
                 assignee_id=agent_id, previous_assignee_id=conv["assignee_id"])
    await audit(conn, actor, event, conversation_id=conversation_id,
                details={"assignee_id": agent_id, "previous_assignee_id": conv["assignee_id"]})
    effects.emit("assignment", conversation_id=conversation_id, assignee_id=agent_id,
                 previous_assignee_id=conv["assignee_id"], team_id=conv["team_id"])


async def claim(conn, scope: Scope, actor: Actor, conversation_id: int, effects: thread.Effects) -> None:
    """Take an unassigned conversation (of two agents claiming at once exactly one wins)."""
    if actor.agent_id is None:
        raise Invalid("not_an_agent", "only a token linked to an agent can claim")
    conv = await visible_conversation(conn, scope, conversation_id)
    won = await conversation.claim(conn, conversation_id, actor.agent_id)
    if won is None:
        holder = await conn.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", conversation_id)
        if holder == actor.agent_id:
            return
        raise Conflict("already_assigned", "another agent has this conversation", assignee_id=holder)
    await conversation.take_over(conn, won, "claimed")
    await _event(conn, actor, conversation_id, f"Claimed by {actor.name}", "claimed", assignee_id=actor.agent_id)
    await audit(conn, actor, "claim", conversation_id=conversation_id)
    effects.emit("assignment", conversation_id=conversation_id, assignee_id=actor.agent_id,
                 previous_assignee_id=None, team_id=conv["team_id"])


async def unassign(conn, scope: Scope, actor: Actor, conversation_id: int, effects: thread.Effects) -> None:
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    if conv["assignee_id"] is None:
        return
    await conversation.assign(conn, conversation_id, None)
    await _event(conn, actor, conversation_id, f"Unassigned by {actor.name}", "unassigned",
                 previous_assignee_id=conv["assignee_id"])
    await audit(conn, actor, "unassign", conversation_id=conversation_id,
                details={"previous_assignee_id": conv["assignee_id"]})
    effects.emit("assignment", conversation_id=conversation_id, assignee_id=None,
                 previous_assignee_id=conv["assignee_id"], team_id=conv["team_id"])


async def set_team(conn, scope: Scope, actor: Actor, conversation_id: int, team_id: int | None,
                   effects: thread.Effects) -> None:
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    name = "the unrouted queue"
    if team_id is not None:
        team = await conn.fetchval("SELECT name FROM teams WHERE id = $1", team_id)
        if team is None:
            raise Invalid("unknown_team", f"no team with id {team_id}")
        name = f"team {team}"
    effects.extend(await conversation.set_team(conn, conversation_id, team_id, conv["team_id"]))
    await _event(conn, actor, conversation_id, f"Moved to {name} by {actor.name}", "team_changed",
                 team_id=team_id, previous_team_id=conv["team_id"])
    await audit(conn, actor, "set_team", conversation_id=conversation_id,
                details={"team_id": team_id, "previous_team_id": conv["team_id"]})


async def route_to_team(conn, conversation_id: int, team_id: int | None, *, team_name: str, why: str,
                        rules_version: str, effects: thread.Effects) -> None:
    """The system routes an escalated conversation to a team (`team_id` None: the team named does
    not exist, so it stays where it is and the thread says why)."""
    previous = await conn.fetchval("SELECT team_id FROM conversations WHERE id = $1 FOR UPDATE", conversation_id)
    if team_id is None:
        await thread.add_event(conn, conversation_id, f"No team named {team_name!r}; left in its queue",
                               event="team_unknown", details={"team": team_name, "why": why})
        return
    if team_id == previous:
        return
    effects.extend(await conversation.set_team(conn, conversation_id, team_id, previous))
    await thread.add_event(conn, conversation_id, f"Routed to team {team_name} ({why})", event="team_routed",
                           details={"team_id": team_id, "previous_team_id": previous, "why": why,
                                    "rules_version": rules_version})
    await conn.execute(
        """INSERT INTO audit_log (actor_type, action, conversation_id, details)
           VALUES ('system', 'route_to_team', $1, $2)""",
        conversation_id, {"team_id": team_id, "previous_team_id": previous, "why": why})


async def snooze(conn, scope: Scope, actor: Actor, conversation_id: int, until: datetime, now: datetime,
                 effects: thread.Effects) -> None:
    if until <= now:
        raise Invalid("invalid_time", "snooze until must be in the future")
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    if conv["status"] == Status.RESOLVED:
        raise Conflict("resolved", "a resolved conversation cannot be snoozed; reopen it first")
    effects.extend(await conversation.snooze(conn, conversation_id, until))
    await _event(conn, actor, conversation_id, f"Snoozed until {until.isoformat()} by {actor.name}", "snoozed",
                 until=until.isoformat())
    await audit(conn, actor, "snooze", conversation_id=conversation_id, details={"until": until.isoformat()})


async def wake_snoozed(conn: asyncpg.Connection, due: list[asyncpg.Record], effects: thread.Effects) -> None:
    """Batch timer handler (kind 'snooze'): these snoozes ended, one statement for all of them. A
    customer message may have woken a conversation first (then it is left as it is)."""
    for cid in await conversation.wake(conn, [t["conversation_id"] for t in due]):
        await thread.add_event(conn, cid, "Snooze ended", event="snooze_ended")
        effects.extend(conversation.woken(cid))


async def resolve(conn, scope: Scope, actor: Actor, conversation_id: int, effects: thread.Effects, *,
                  csat_text: str | None = None, policy: routing.Policy | None = None) -> dict:
    """End the episode. With `csat_text`, ask it on the customer's channel (skipped, with the
    reasons, when no channel can carry it)."""
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    if conv["status"] == Status.RESOLVED:
        raise Conflict("already_resolved", "the conversation is already resolved")
    effects.extend(await conversation.resolve(conn, conv, actor.agent_id))
    await _event(conn, actor, conversation_id, f"Resolved by {actor.name}", "resolved",
                 episode_id=conv["current_episode_id"])
    await audit(conn, actor, "resolve", conversation_id=conversation_id,
                details={"episode_id": conv["current_episode_id"], "csat": csat_text is not None})
    csat = None
    if csat_text:
        try:
            async with conn.transaction():
                mid = await thread.queue_outbound(
                    conn, conversation_id, text=csat_text, author_type="system",
                    extra={"csat": {"episode_id": conv["current_episode_id"]}}, effects=effects,
                    policy=policy)
            csat = {"sent": True, "message_id": mid}
        except thread.NoRoute as exc:
            csat = {"sent": False, "reasons": exc.reasons}
    return {"csat": csat}


async def record_csat(conn, conversation_id: int, episode_id: int, score: int, message_id: int,
                      effects: thread.Effects) -> bool:
    """Record a survey answer on the episode it rates, with the agent (the assignee, else who
    resolved it) and the team it rates. False when the episode already has an answer."""
    row = await conversation.rate_episode(conn, conversation_id, episode_id, score, message_id)
    if row is None:
        return False
    await conn.execute("UPDATE messages SET episode_id = $2 WHERE id = $1", message_id, episode_id)
    await thread.add_event(conn, conversation_id, f"Customer rated the help {score}/5", event="csat_recorded",
                           details={"episode_id": episode_id, "score": score, "agent_id": row["csat_agent_id"],
                                    "team_id": row["csat_team_id"]})
    effects.emit("conversation.updated", conversation_id=conversation_id, csat_score=score, episode_id=episode_id)
    return True


async def reopen(conn, scope: Scope, actor: Actor, conversation_id: int, effects: thread.Effects) -> None:
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    if conv["status"] != Status.RESOLVED:
        raise Conflict("not_resolved", "only a resolved conversation can be reopened")
    effects.extend(await conversation.reopen(conn, conv))
    await _event(conn, actor, conversation_id, f"Reopened by {actor.name}", "reopened")
    await audit(conn, actor, "reopen", conversation_id=conversation_id)


async def hand_back(conn, scope: Scope, actor: Actor, conversation_id: int, flow_state: str,
                    flow_name: str | None, effects: thread.Effects, flow_handler=None) -> None:
    """Return the conversation to the bot at `flow_state` (of `flow_name`, default: its flow).

    The bot enters that state for real (its prompt is sent, its timers start); an unknown state is
    refused, and so is a hand-back when no bot flows run here.
    """
    await visible_conversation(conn, scope, conversation_id, lock=True)
    if flow_handler is None:
        raise Conflict("no_bot", "this gateway runs without bot flows: there is no bot to hand back to")
    from gateway.flows.model import FlowError

    try:
        async with conn.transaction():
            await flow_handler.hand_back(conn, conversation_id, flow_state, effects, flow_name=flow_name)
    except FlowError as exc:
        raise Invalid("unknown_flow_state", str(exc)) from None
    await audit(conn, actor, "hand_back", conversation_id=conversation_id,
                details={"flow_state": flow_state, "flow_name": flow_name})


async def change_labels(conn, scope: Scope, actor: Actor, conversation_id: int, add: list[str],
                        remove: list[str], effects: thread.Effects) -> list[str]:
    await visible_conversation(conn, scope, conversation_id, lock=True)
    labels, changed = await conversation.change_labels(conn, conversation_id, add, remove)
    effects.extend(changed)
    await audit(conn, actor, "labels", conversation_id=conversation_id, details={"add": add, "remove": remove})
    return labels


async def add_note(conn, scope: Scope, actor: Actor, conversation_id: int, text: str,
                   effects: thread.Effects) -> int:
    await visible_conversation(conn, scope, conversation_id)
    message_id, seq = await thread.append(conn, conversation_id, direction="internal", kind="note",
                                          channel="system", body=text, author_type="agent",
                                          author_id=actor.agent_id, processed=True)
    await audit(conn, actor, "note", conversation_id=conversation_id, details={"message_id": message_id})
    effects.emit("message.created", conversation_id=conversation_id, message_id=message_id, seq=seq,
                 direction="internal", kind="note", channel="system")
    return message_id


def request_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def reply(conn, scope: Scope, actor: Actor, conversation_id: int, *, text: str,
                channel: Channel | None, attachments: tuple[Attachment, ...], subject: str | None,
                idempotency_key: str | None, fingerprint: str, effects: thread.Effects,
                policy: routing.Policy | None = None, inbox_id: int | None = None) -> tuple[int, bool]:
    """Queue an agent's reply. Returns (message id, duplicate). Raises thread.NoRoute (nothing
    written) when no channel can carry it; the caller's transaction then rolls back the key too.
    It leaves from the inbox the customer last wrote to on its channel, or from `inbox_id` (one the
    agent may use: without a team or of one of theirs), which also picks the channel."""
    conv = await visible_conversation(conn, scope, conversation_id, lock=True)
    if inbox_id is not None:
        try:
            inbox_channel = Channel(await inboxes.usable_inbox(conn, inbox_id,
                                                               None if scope.everything else scope.team_ids))
        except InboxRefused as exc:
            raise Invalid(exc.code, exc.message) from None
        if channel is not None and channel is not inbox_channel:
            raise Invalid("inbox_channel_mismatch", f"inbox {inbox_id} sends on {inbox_channel.value}, not {channel.value}")
        channel = inbox_channel
    if idempotency_key is not None:
        taken = await conn.fetchval(
            """INSERT INTO send_idempotency (scope, key, request_hash, conversation_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING key""",
            actor.key, idempotency_key, fingerprint, conversation_id)
        if taken is None:
            prior = await conn.fetchrow(
                "SELECT request_hash, conversation_id, message_id FROM send_idempotency WHERE scope = $1 AND key = $2",
                actor.key, idempotency_key)
            if prior["request_hash"] != fingerprint or prior["conversation_id"] != conversation_id:
                raise Conflict("idempotency_key_reused", "this Idempotency-Key was used for a different request")
            return prior["message_id"], True
    message_id = await thread.queue_outbound(
        conn, conversation_id, text=text, author_type="agent", author_id=actor.agent_id, channel=channel,
        attachments=attachments, subject=subject, effects=effects, policy=policy, inbox_id=inbox_id)
    if idempotency_key is not None:
        await conn.execute("UPDATE send_idempotency SET message_id = $3 WHERE scope = $1 AND key = $2",
                           actor.key, idempotency_key, message_id)
    await conversation.take_over(conn, conv, "agent_reply")
    await conversation.agent_answered(conn, conversation_id, actor.agent_id, conv["current_episode_id"])
    await audit(conn, actor, "reply", conversation_id=conversation_id,
                details={"message_id": message_id, "channel": channel.value if channel else None})
    effects.emit("conversation.updated", conversation_id=conversation_id, waiting_since=None)
    if conv["assignee_id"] is None and actor.agent_id is not None:
        effects.emit("assignment", conversation_id=conversation_id, assignee_id=actor.agent_id,
                     previous_assignee_id=None, team_id=conv["team_id"])
    return message_id, False



def typing(effects: thread.Effects, conversation_id: int, agent_id: int | None, on: bool) -> None:
    """An agent starts or stops typing: one event that the other agents' feeds and the customer's
    chat tab both read (`who`, `state` and `ttl` for the widget; `agent_id`, `typing` for the inbox)."""
    effects.emit("typing", conversation_id=conversation_id, who="agent", agent_id=agent_id,
                 state="on" if on else "off", typing=on, ttl=TYPING_TTL)
