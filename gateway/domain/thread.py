"""Operations on a conversation thread, composable inside a caller's transaction.

Every entry in a thread (customer message, our message, private note, system event) takes the
next per-thread seq. An outbound message and its outbox row are written together, so whoever
calls `queue_outbound` inside its transaction gets "state change and message commit together".
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Mapping

import asyncpg

from gateway.app.log import get_logger
from gateway.app.metrics import REPLIES_DROPPED
from gateway.domain import consent, conversation, routing
from gateway.domain.identity import address_kind
from gateway.domain.text_parts import split_text
from gateway.domain.types import Attachment, Button, Channel, Effects, Purpose, TemplateRef
from gateway.inboxes import store as inboxes

log = get_logger(__name__)

# Longest text one provider message may carry (Twilio Body 1600 chars, WhatsApp text 4096).
TEXT_LIMITS = {Channel.SMS: 1600, Channel.WHATSAPP: 4096}


class NoRoute(Exception):
    """No channel can carry this message now; `reasons` says why for each channel."""

    def __init__(self, reasons: dict[str, str]):
        super().__init__("no channel available: " + ", ".join(f"{k}: {v}" for k, v in reasons.items())
                         if reasons else "no channel available: the contact has no reachable address")
        self.reasons = reasons


_MESSAGE_COLUMNS = """conversation_id, seq, episode_id, direction, kind, channel, body, content, author_type,
                      author_id, status, purpose, recipient_address, sender_address, processed_at, segments,
                      inbox_id"""
_MESSAGE_VALUES = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, CASE WHEN $15 THEN now() END, $16, $17"
INSERT_MESSAGE = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({_MESSAGE_VALUES}) RETURNING id"
# An outbound message and its outbox row in one statement (one round trip).
_OUTBOX_ROW = """o AS (INSERT INTO outbox (message_id, conversation_id, channel, to_address, purpose, payload, max_attempts)
                       SELECT id, $1, $6, $13, $12, $18, $19 FROM m)"""
INSERT_MESSAGE_AND_OUTBOX = f"WITH m AS ({INSERT_MESSAGE}), {_OUTBOX_ROW} SELECT id FROM m"
# The same with the id taken ahead (the last argument), for a batch round's deferred writes.
MESSAGE_IDS = "messages_id_seq"
INSERT_MESSAGE_WITH_ID = (f"INSERT INTO messages ({_MESSAGE_COLUMNS}, id) VALUES ({_MESSAGE_VALUES}, $18)")
INSERT_MESSAGE_AND_OUTBOX_WITH_ID = (f"WITH m AS (INSERT INTO messages ({_MESSAGE_COLUMNS}, id) "
                                     f"VALUES ({_MESSAGE_VALUES}, $20) RETURNING id), {_OUTBOX_ROW} SELECT id FROM m")


async def append(conn: asyncpg.Connection, conversation_id: int, *, direction: str, channel: str,
                 body: str = "", kind: str = "message", content: dict | None = None,
                 author_type: str, author_id: int | None = None, status: str | None = None,
                 purpose: str | None = None, recipient_address: str | None = None,
                 sender_address: str | None = None, processed: bool = False,
                 segments: int | None = None, draft: conversation.Draft | None = None,
                 inbox_id: int | None = None, outbox: tuple[dict, int] | None = None) -> tuple[int, int]:
    """Append one entry to the thread; returns (message id, seq). With a turn's `draft` the
    conversation row is written once, when the draft is flushed, and in a batch round (the draft's
    `writes`) the entry too, with the round's others, its id taken ahead. With `outbox` (payload,
    max_attempts) the entry's outbox row is written by the same statement."""
    if draft is not None:
        seq, episode_id = await draft.take_seq(conn)
    else:
        seq, episode_id = await conversation.take_seq(conn, conversation_id)
    args = (conversation_id, seq, episode_id, direction, kind, channel, body, content or {}, author_type,
            author_id, status, purpose, recipient_address, sender_address, processed, segments, inbox_id)
    if draft is not None and draft.writes is not None:
        message_id = await draft.writes.take_id(MESSAGE_IDS, per_turn=2)
        if outbox is None:
            draft.writes.add((INSERT_MESSAGE_WITH_ID, (*args, message_id)))
        else:
            draft.writes.add((INSERT_MESSAGE_AND_OUTBOX_WITH_ID, (*args, *outbox, message_id)))
    elif outbox is None:
        message_id = await conn.fetchval(INSERT_MESSAGE, *args)
    else:
        message_id = await conn.fetchval(INSERT_MESSAGE_AND_OUTBOX, *args, *outbox)
    return message_id, seq


async def add_event(conn: asyncpg.Connection, conversation_id: int, text: str, *,
                    event: str, details: dict | None = None, author_type: str = "system",
                    author_id: int | None = None, draft: conversation.Draft | None = None) -> tuple[int, int]:
    """A system event in the thread ("escalated by bot", "assigned to", "opted out")."""
    return await append(conn, conversation_id, direction="internal", kind="event", channel="system",
                        body=text, content={"event": event, **(details or {})},
                        author_type=author_type, author_id=author_id, draft=draft)


async def reply_dropped(conn: asyncpg.Connection, conversation_id: int, exc: NoRoute,
                        draft: conversation.Draft | None = None) -> None:
    """A reply no channel can carry: the thread shows agents why, the log says so at warning level,
    and /metrics counts it (gateway_replies_dropped_total)."""
    await add_event(conn, conversation_id, f"Reply not sent: {exc}", event="reply_not_sent",
                    details={"reasons": exc.reasons}, draft=draft)
    reasons = sorted(set(exc.reasons.values())) or ["no_address"]
    REPLIES_DROPPED.labels(",".join(reasons)).inc()
    log.warning("reply dropped: no channel can carry it", conversation_id=conversation_id, reasons=exc.reasons)


@dataclasses.dataclass
class RouteFacts:
    """What routing a message to one conversation reads (`route_options`, the sending inbox), read
    for the conversations of a batch of turns at once (`read_route_facts`: four statements per
    batch instead of five per reply). They are read inside the batch's transaction, under the
    conversations' row locks (no inbound message can land meanwhile); the outbox checks consent
    again at send time, as for every message."""

    identities: list[tuple[str, str]]                      # the contact's (kind, address), by id
    last_inbound: dict[tuple[str, str], datetime]          # (channel, address) -> last inbound at
    last_inbound_channel: str | None
    last_inbox: dict[str, int | None]                      # channel -> inbox of the last inbound there
    blocked: dict[tuple[str, str], str]                    # (channel, address) -> reason, for `purpose`
    purpose: Purpose
    inboxes: dict[int, Any]                                # every inbox (inboxes.for_routing)


async def read_route_facts(conn: asyncpg.Connection, conversations: list[Mapping[str, Any]], *,
                           purpose: Purpose, policy: routing.Policy | None = None) -> dict[int, RouteFacts]:
    """RouteFacts of many conversations (rows with id, contact_id, last_inbound_channel) at once."""
    ids = [c["id"] for c in conversations]
    identities: dict[int, list[tuple[str, str]]] = {}
    for r in await conn.fetch("SELECT contact_id, kind, address FROM identities WHERE contact_id = ANY($1::bigint[]) "
                              "ORDER BY id", list({c["contact_id"] for c in conversations})):
        identities.setdefault(r["contact_id"], []).append((r["kind"], r["address"]))
    last: dict[int, dict[tuple[str, str], datetime]] = {}
    last_inbox: dict[int, dict[str, tuple[int, int | None]]] = {}
    for r in await conn.fetch(
            """SELECT conversation_id, channel, sender_address, max(created_at) AS at, max(seq) AS seq,
                      (array_agg(inbox_id ORDER BY seq DESC))[1] AS inbox_id
               FROM messages WHERE conversation_id = ANY($1::bigint[]) AND direction = 'in'
               GROUP BY conversation_id, channel, sender_address""", ids):
        cid = r["conversation_id"]
        last.setdefault(cid, {})[(r["channel"], r["sender_address"])] = r["at"]
        newest = last_inbox.setdefault(cid, {}).get(r["channel"])
        if newest is None or r["seq"] > newest[0]:
            last_inbox[cid][r["channel"]] = (r["seq"], r["inbox_id"])
    reachable = {c["id"]: routing.reachable_from_identities(identities.get(c["contact_id"], []), last.get(c["id"], {}))
                 for c in conversations}
    targets = sorted({(r.kind, r.address, r.channel.value) for rs in reachable.values() for r in rs})
    blocked = await consent.blocked_reasons(conn, targets, purpose.value, policy.consent_regimes if policy else ())
    every_inbox = await inboxes.for_routing(conn)
    return {c["id"]: RouteFacts(
        identities=identities.get(c["contact_id"], []), last_inbound=last.get(c["id"], {}),
        last_inbound_channel=c["last_inbound_channel"],
        last_inbox={ch: v[1] for ch, v in last_inbox.get(c["id"], {}).items()},
        blocked={(r.channel.value, r.address): blocked[(r.kind, r.address, r.channel.value)]
                 for r in reachable[c["id"]] if (r.kind, r.address, r.channel.value) in blocked},
        purpose=purpose, inboxes=every_inbox) for c in conversations}


async def route_options(conn: asyncpg.Connection, conversation_id: int, *, purpose: Purpose,
                        whatsapp_template_available: bool = False, has_template: bool = False,
                        now: datetime | None = None, policy: routing.Policy | None = None,
                        facts: RouteFacts | None = None) -> routing.RouteOptions:
    """Every channel a message to this conversation could take now (`facts`: read before, for
    this purpose, by a batch of turns)."""
    now = now or datetime.now(timezone.utc)
    if facts is not None and facts.purpose is purpose:
        reachable = routing.reachable_from_identities(facts.identities, facts.last_inbound)
        blocked, last_channel = facts.blocked, facts.last_inbound_channel
    else:
        rows = await conn.fetch(
            """SELECT c.last_inbound_channel, i.kind, i.address FROM conversations c
               LEFT JOIN identities i ON i.contact_id = c.contact_id WHERE c.id = $1 ORDER BY i.id""",
            conversation_id)
        identities = [(r["kind"], r["address"]) for r in rows if r["kind"] is not None]
        last = {(r["channel"], r["sender_address"]): r["at"] for r in await conn.fetch(
            """SELECT channel, sender_address, max(created_at) AS at FROM messages
               WHERE conversation_id = $1 AND direction = 'in' GROUP BY channel, sender_address""",
            conversation_id)}
        reachable = routing.reachable_from_identities(identities, last)
        blocked = {(channel, address): reason for (kind, address, channel), reason in (await consent.blocked_reasons(
            conn, [(r.kind, r.address, r.channel.value) for r in reachable], purpose.value,
            policy.consent_regimes if policy else ())).items()}
        last_channel = rows[0]["last_inbound_channel"] if rows else None
    if policy is not None:
        whatsapp_template_available = policy.whatsapp_template_available
    options = routing.route_options(reachable, now=now, purpose=purpose, blocked=blocked,
                                    whatsapp_template_available=whatsapp_template_available,
                                    has_template=has_template)
    return dataclasses.replace(options, last_inbound_channel=Channel(last_channel) if last_channel else None,
                               live=policy.live if policy else frozenset())


def _jsonable(items) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(i).items() if v is not None} for i in items]


async def queue_outbound(conn: asyncpg.Connection, conversation_id: int, *, text: str,
                         author_type: str, author_id: int | None = None,
                         purpose: Purpose = Purpose.REPLY, channel: Channel | None = None,
                         to_address: str | None = None, buttons: tuple[Button, ...] = (),
                         button_label: str | None = None,
                         attachments: tuple[Attachment, ...] = (), template: TemplateRef | None = None,
                         subject: str | None = None, html: str | None = None,
                         compliance: bool = False, whatsapp_template_available: bool = False,
                         extra: dict[str, Any] | None = None, effects: Effects | None = None,
                         max_attempts: int = 8, policy: routing.Policy | None = None,
                         draft: conversation.Draft | None = None, inbox_id: int | None = None,
                         facts: RouteFacts | None = None) -> int:
    """Write an outbound message into the thread plus its outbox row. Returns the message id.

    With `channel` and `to_address` both given (e.g. a compliance reply to the exact address that
    wrote STOP) routing is skipped. Otherwise the route is chosen now; consent is checked again
    by the outbox at send time. The message leaves from inbox `inbox_id` when it is on the chosen
    channel, else from the inbox the customer last wrote to there (gateway.inboxes.store.sending_inbox).
    `facts`: what routing reads, read before by a batch of turns (`read_route_facts`).
    """
    if channel is not None and to_address is not None:
        route = routing.Route(channel, to_address, address_kind(channel, to_address))
    else:
        options = await route_options(conn, conversation_id, purpose=purpose,
                                      whatsapp_template_available=whatsapp_template_available,
                                      has_template=template is not None, policy=policy, facts=facts)
        route = routing.choose_route(options, explicit=channel,
                                     last_inbound_channel=options.last_inbound_channel)
        if route is None:
            raise NoRoute({c.value: r for c, r in options.unavailable.items()}
                          if channel is None else {channel.value: options.unavailable.get(channel, "no_address")})
    limit = TEXT_LIMITS.get(route.channel)
    if limit and len(text) > limit and template is None:
        # Too long for one provider message: several, split at paragraph/sentence/word boundaries.
        parts = split_text(text, limit)
        ids = [await queue_outbound(conn, conversation_id, text=part, author_type=author_type,
                                    author_id=author_id, purpose=purpose, channel=route.channel,
                                    to_address=route.address, buttons=buttons if i == len(parts) - 1 else (),
                                    button_label=button_label, attachments=attachments if i == 0 else (),
                                    compliance=compliance, extra={**(extra or {}), "part": [i + 1, len(parts)]},
                                    effects=effects, max_attempts=max_attempts, draft=draft, inbox_id=inbox_id,
                                    facts=facts)
               for i, part in enumerate(parts)]
        return ids[0]
    if facts is not None:
        inbox = inboxes.sending_from(facts.inboxes, route.channel.value, facts.last_inbox.get(route.channel.value),
                                     inbox_id)
    else:
        inbox = await inboxes.sending_inbox(conn, conversation_id, route.channel.value, inbox_id)
    if not compliance:
        text, html = inbox.signed(route.channel.value, text, html)
    content: dict[str, Any] = {}
    if buttons:
        content["buttons"] = _jsonable(buttons)
    if button_label:
        content["button_label"] = button_label
    if attachments:
        content["attachments"] = _jsonable(attachments)
    if template is not None:
        content["template"] = {"name": template.name, "language": template.language,
                               "parameters": list(template.parameters), "variables": dict(template.variables)}
    if route.needs_template:
        content["needs_template"] = True
    if subject:
        content["subject"] = subject
    if html:
        content["html"] = html
    if compliance:
        content["compliance"] = True
    if extra:
        content.update(extra)
    message_id, seq = await append(
        conn, conversation_id, direction="out", channel=route.channel.value, body=text, content=content,
        author_type=author_type, author_id=author_id, status="queued", purpose=purpose.value,
        recipient_address=route.address, sender_address=inbox.from_address, inbox_id=inbox.inbox_id,
        draft=draft, outbox=({"kind": route.kind}, max_attempts))
    if effects is not None:
        effects.wake_outbox = True
        effects.emit("message.created", conversation_id=conversation_id, message_id=message_id, seq=seq,
                     direction="out", channel=route.channel.value)
    return message_id

