"""What an email we send carries beyond its text: subject, threading headers, Reply-To, From name.

The outbox calls `prepare_outgoing` for every email just before it is sent (the channel's prepare
step, gateway.pipeline.outbox.sender.PrepareOutgoing): it reads the conversation's last inbound mail
to answer in its thread and signs the reply-address token that brings the answer back here.
"""
from __future__ import annotations

import dataclasses

import asyncpg

from gateway.app.settings import Settings
from gateway.channels.email.threading import make_thread_token, reply_address
from gateway.domain.secret_keys import derive_key
from gateway.domain.types import OutgoingMessage


def thread_secret(settings: Settings) -> str:
    """The key of the reply-address thread tokens (derived from GATEWAY_SECRET_KEY)."""
    return derive_key(settings.secret_key, "email-thread").hex()


async def outbound_fields(conn: asyncpg.Connection, settings: Settings, conversation_id: int,
                          subject: str | None, *, author_type: str | None = None,
                          author_id: int | None = None) -> dict:
    """Subject, threading headers, Reply-To and the From display name for an email in this conversation.

    An agent's reply is from "Agent Name via Business" (GATEWAY_EMAIL_FROM_NAME; just the agent's
    name without it); anything else (bot, journey, system) from the business's name when set.
    """
    last = await conn.fetchrow(
        """SELECT content FROM messages WHERE conversation_id = $1 AND channel = 'email' AND direction = 'in'
           ORDER BY seq DESC LIMIT 1""", conversation_id)
    fields: dict = {}
    if last is not None:
        content = last["content"] or {}
        mid = (content.get("extra") or {}).get("message_id")
        if mid:
            fields["in_reply_to"] = mid
            fields["references"] = tuple(content.get("references", ())) + (mid,)
        theirs = content.get("subject") or ""
        if not subject and theirs:
            subject = theirs if theirs.lower().startswith("re:") else f"Re: {theirs}"
    fields["subject"] = subject or "Your conversation with us"
    if settings.email_reply_domain:
        token = make_thread_token(conversation_id, thread_secret(settings))
        fields["reply_to"] = reply_address(token, settings.email_reply_domain)
    business = settings.email_from_name
    agent = (await conn.fetchval("SELECT name FROM agents WHERE id = $1", author_id)
             if author_type == "agent" and author_id is not None else None)
    if agent:
        fields["sender_name"] = f"{agent} via {business}" if business else agent
    elif business:
        fields["sender_name"] = business
    return fields


async def prepare_outgoing(conn: asyncpg.Connection, settings: Settings, row, outgoing: OutgoingMessage) -> OutgoingMessage:
    """The outbox's last step for an email (gateway.pipeline.outbox.sender.PrepareOutgoing): `outbound_fields`."""
    fields = await outbound_fields(conn, settings, row["conversation_id"], outgoing.subject,
                                   author_type=row["author_type"], author_id=row["author_id"])
    return dataclasses.replace(outgoing, **fields)
