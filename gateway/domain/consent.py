"""Consent: regimes, keywords, records with proof and history, and the send-time check.

This module is the one owner of consent rules and writes. A *regime* per channel and purpose says
whether a message may go out without a recorded answer: `opt_in` needs a recorded grant (marketing on
SMS and WhatsApp by default, as carrier rules, TCPA and WhatsApp's policy expect), `opt_out` sends
until the customer says no (email marketing by default, replies and transactional messages always
unless changed). Settings may override any pair (`GATEWAY_CONSENT_REGIMES`).

Keywords follow carrier practice: an exact single word, any case, trimmed. STOP revokes every
non-compliance message to that address on that channel; a global word (STOPALL, where the carrier
allows it) revokes every channel of the contact; START restores what a STOP keyword removed; HELP
answers with the configured help text. Email one-click unsubscribe revokes marketing on email only.
Every change is kept in `consent_history` with its source and proof.

Scope across our own addresses (inboxes: several numbers, WhatsApp numbers, mailboxes): an answer is
about the customer's address on a channel, whichever of our addresses it was given to, on every
channel. SMS: a STOP to one of our numbers stops SMS from all of them; carrier rules (CTIA, per-number
opt-out) ask for at least the number written to, and all of them is never less (START to any one
undoes it). WhatsApp: Meta keeps opt-outs per business (error 131050), not per phone number id.
Email: an unsubscribe is the recipient's, for our mail. So no inbox has a consent setting of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from gateway.domain.identity import address_hash, channels_for_kind
from gateway.domain.types import Channel, Purpose

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
DEFAULT_GLOBAL_STOP_WORDS = ("STOPALL",)

ALL = "all"
MARKETING = "marketing"
ANY_CHANNEL = "*"
RECORD_PURPOSES = (MARKETING, Purpose.TRANSACTIONAL.value, ALL)   # what an answer can be about
# the channels a customer answers consent for (web chat and the API channel only ever reply), or all
ANSWER_CHANNELS = ("sms", "whatsapp", "email")
RECORD_CHANNELS = (*ANSWER_CHANNELS, ALL)
# how the preference page names them
CHANNEL_TITLES = {"sms": "Text messages (SMS)", "whatsapp": "WhatsApp", "email": "Email"}
OPT_IN, OPT_OUT = "opt_in", "opt_out"
# (channel, purpose) -> regime; every pair not named is opt_out
DEFAULT_REGIMES = {("sms", MARKETING): OPT_IN, ("whatsapp", MARKETING): OPT_IN, ("email", MARKETING): OPT_OUT}
KEYWORD_SOURCE = "keyword:"
CHANNEL_WORDS = {"sms": "SMS", "whatsapp": "WhatsApp messages", "email": "emails", "webchat": "chat messages",
                 "api": "messages"}

Regimes = tuple[tuple[str, str, str], ...]   # settings' overrides: (channel, purpose, regime)


def parse_regimes(raw: str) -> Regimes:
    """`sms.marketing=opt_in,email.marketing=opt_in` -> overrides (ValueError naming the bad part)."""
    out = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key, _, regime = part.partition("=")
        channel, _, purpose = key.strip().partition(".")
        if channel not in {c.value for c in Channel} or purpose not in {p.value for p in Purpose} \
                or regime.strip() not in (OPT_IN, OPT_OUT):
            raise ValueError(f"{part!r} is not channel.purpose=opt_in|opt_out "
                             f"(channels {', '.join(c.value for c in Channel)}; "
                             f"purposes {', '.join(p.value for p in Purpose)})")
        out.append((channel, purpose, regime.strip()))
    return tuple(out)


def regime_for(overrides: Regimes, channel: str, purpose: str) -> str:
    """The regime of one channel and purpose: settings' override, else the default."""
    for c, p, regime in overrides:
        if c == channel and p == purpose:
            return regime
    return DEFAULT_REGIMES.get((channel, purpose), OPT_OUT)


# -- keywords -------------------------------------------------------------------------------------

def classify_keyword(text: str, global_words=DEFAULT_GLOBAL_STOP_WORDS) -> str | None:
    """'stop' | 'stop_all' | 'start' | 'help' | None, for an exact single-word message.

    A word of `global_words` (the carrier allows a global opt-out) is 'stop_all'; otherwise any stop
    word stops the channel it came on."""
    word = text.strip().upper()
    if not word or any(ch.isspace() for ch in word):
        return None
    word = word.rstrip(".!")
    if word in global_words:
        return "stop_all"
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


@dataclass
class ConsentOutcome:
    """What an answer changed: the thread event to add and, for a keyword, the confirmation to send."""

    event: str | None
    summary: str
    reply: str = ""
    details: dict = field(default_factory=dict)


def _on_what(kind: str) -> str:
    return "on this number" if kind == "phone" else "on this account"


async def apply_keyword(conn: asyncpg.Connection, *, contact_id: int, kind: str, address: str, channel: str,
                        keyword: str, word: str, help_text: str) -> ConsentOutcome:
    """Apply STOP / STOPALL / START / HELP from `address` on `channel`; the confirmation says exactly
    what changed."""
    source = f"{KEYWORD_SOURCE}{word.strip()[:40]}"
    what = CHANNEL_WORDS.get(channel, "messages")
    details = {"channel": channel, "address": address}
    if keyword == "stop":
        await set_consent(conn, kind=kind, address=address, channel=channel, purpose=ALL, granted=False,
                          source=source)
        return ConsentOutcome("opted_out", f"Opted out on {channel} ({address})",
                              f"You won't get more {what} from us {_on_what(kind)}. Reply START to resubscribe.",
                              details)
    if keyword == "stop_all":
        idents = await _identities(conn, contact_id)
        for k, a in idents or [(kind, address)]:
            await set_consent(conn, kind=k, address=a, channel=ANY_CHANNEL, purpose=ALL, granted=False,
                              source=source)
        return ConsentOutcome("opted_out", f"Opted out of every channel (from {channel}, {address})",
                              "You won't get any more messages from us on any channel: SMS, WhatsApp, email "
                              "or chat. Reply START to resubscribe.", {**details, "global": True})
    if keyword == "start":
        restored = await _restore_keyword_stops(conn, contact_id, kind, address, channel, source)
        if restored == "all":
            reply = "You'll get messages from us again on every channel. Reply STOP to unsubscribe."
        else:
            reply = f"You'll get {what} from us {_on_what(kind)} again. Reply STOP to unsubscribe."
        return ConsentOutcome("opted_in", f"Opted in again on {channel} ({address})", reply,
                              {**details, "restored": restored})
    return ConsentOutcome(None, "", help_text, details)


async def provider_opt_out(conn: asyncpg.Connection, *, kind: str, address: str, channel: str, code: str,
                           purpose: str = ALL) -> ConsentOutcome:
    """A provider reports that `address` unsubscribed there (e.g. Twilio 21610, on a status callback
    or a send's answer): consent off on that channel for every purpose, or for marketing only."""
    await set_consent(conn, kind=kind, address=address, channel=channel, purpose=purpose, granted=False,
                      source=f"provider:{code}")
    what = "marketing" if purpose == MARKETING else "all messages"
    return ConsentOutcome("opted_out", f"Provider reports {address} opted out of {what} on {channel}",
                          details={"channel": channel, "source": code, "purpose": purpose})


async def forget_address(conn: asyncpg.Connection, kind: str, address: str) -> bool:
    """Erasure: remove every consent answer of an address. One that had opted out leaves a
    tombstone (its hash only), so it is never messaged again; True when one was left."""
    opted_out = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM consents WHERE address_kind = $1 AND address = $2 AND NOT granted)",
        kind, address)
    if opted_out:
        await conn.execute(
            """INSERT INTO suppressions (address_hash, reason) VALUES ($1, 'erased_opted_out')
               ON CONFLICT (address_hash) DO NOTHING""", address_hash(kind, address))
    await conn.execute("DELETE FROM consents WHERE address_kind = $1 AND address = $2", kind, address)
    await conn.execute("DELETE FROM consent_history WHERE address_kind = $1 AND address = $2", kind, address)
    return opted_out


async def _identities(conn, contact_id: int) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT kind, address FROM identities WHERE contact_id = $1 ORDER BY id", contact_id)
    return [(r["kind"], r["address"]) for r in rows if channels_for_kind(r["kind"])]


async def _restore_keyword_stops(conn, contact_id: int, kind: str, address: str, channel: str,
                                 source: str) -> str:
    """START: grant back this channel, and every channel a global keyword stopped ('all' then)."""
    await set_consent(conn, kind=kind, address=address, channel=channel, purpose=ALL, granted=True, source=source)
    idents = await _identities(conn, contact_id) or [(kind, address)]
    stopped = await conn.fetch(
        """SELECT address_kind, address FROM consents
           WHERE (address_kind, address) IN (SELECT * FROM unnest($1::text[], $2::text[]))
             AND channel = $3 AND purpose = $4 AND NOT granted AND source LIKE $5""",
        [k for k, _ in idents], [a for _, a in idents], ANY_CHANNEL, ALL, KEYWORD_SOURCE + "%")
    for r in stopped:
        await set_consent(conn, kind=r["address_kind"], address=r["address"], channel=ANY_CHANNEL, purpose=ALL,
                          granted=True, source=source)
    return "all" if stopped else "channel"


# -- records --------------------------------------------------------------------------------------

async def set_consent(conn: asyncpg.Connection, *, kind: str, address: str, channel: str,
                      purpose: str, granted: bool, source: str, proof: dict | None = None,
                      at: datetime | None = None) -> bool:
    """Record one answer (current state and history). An answer older than the current one (an
    import of past opt-ins) goes to the history only. True when the current state took it."""
    await conn.execute(
        """INSERT INTO consent_history (address_kind, address, channel, purpose, granted, source, proof, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, coalesce($8, now()))""",
        kind, address, channel, purpose, granted, source, proof, at)
    status = await conn.execute(
        """INSERT INTO consents (address_kind, address, channel, purpose, granted, source, proof, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, coalesce($8, now()))
           ON CONFLICT (address_kind, address, channel, purpose)
           DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source, proof = EXCLUDED.proof,
                         updated_at = EXCLUDED.updated_at
           WHERE consents.updated_at <= EXCLUDED.updated_at""",
        kind, address, channel, purpose, granted, source, proof, at)
    return status.endswith(" 1")


def addresses_for_channel(identities: list[tuple[str, str]], channel: str) -> list[tuple[str, str]]:
    """The (kind, address) of a contact that `channel` reaches ('*': every reachable one)."""
    return [(k, a) for k, a in identities
            if channels_for_kind(k) and (channel == ANY_CHANNEL or Channel(channel) in channels_for_kind(k))]


async def record_for_contact(conn: asyncpg.Connection, contact_id: int, *, channel: str, purpose: str,
                             granted: bool, source: str, proof: dict | None,
                             address: str | None = None) -> list[tuple[str, str]]:
    """Record an answer on every address of the contact that `channel` reaches (or only `address`).
    Returns the addresses; empty when the contact has none there (nothing stored)."""
    targets = addresses_for_channel(await _identities(conn, contact_id), channel)
    if address is not None:
        targets = [(k, a) for k, a in targets if a == address]
    for kind, addr in targets:
        await set_consent(conn, kind=kind, address=addr, channel=channel, purpose=purpose, granted=granted,
                          source=source, proof=proof)
    return targets


async def contact_consents(conn: asyncpg.Connection, contact_id: int) -> list[dict]:
    """What every address of a contact has agreed to, per channel and purpose (latest answer)."""
    rows = await conn.fetch(
        """SELECT c.address_kind, c.address, c.channel, c.purpose, c.granted, c.source, c.proof, c.updated_at
           FROM consents c JOIN identities i ON i.kind = c.address_kind AND i.address = c.address
           WHERE i.contact_id = $1 ORDER BY c.channel, c.purpose, c.address""", contact_id)
    return [dict(r) for r in rows]


async def contact_history(conn: asyncpg.Connection, contact_id: int) -> list[dict]:
    """Every recorded answer of the contact's addresses, oldest first, with source and proof."""
    rows = await conn.fetch(
        """SELECT h.id, h.address_kind, h.address, h.channel, h.purpose, h.granted, h.source, h.proof,
                  h.occurred_at, h.recorded_at
           FROM consent_history h JOIN identities i ON i.kind = h.address_kind AND i.address = h.address
           WHERE i.contact_id = $1 ORDER BY h.occurred_at, h.id""", contact_id)
    return [dict(r) for r in rows]


async def contact_state(conn: asyncpg.Connection, contact_id: int, overrides: Regimes) -> list[dict]:
    """Per channel and purpose the contact can be reached on: the regime and whether a message of
    that purpose may go out now (on at least one address), with the reason when not."""
    idents = await _identities(conn, contact_id)
    targets = [(k, a, c.value) for k, a in idents for c in channels_for_kind(k)
               if c in (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)]
    out = []
    for channel in dict.fromkeys(t[2] for t in targets):
        mine = [t for t in targets if t[2] == channel]
        for purpose in (MARKETING, Purpose.TRANSACTIONAL.value, Purpose.REPLY.value):
            blocked = await blocked_reasons(conn, mine, purpose, overrides)
            out.append({"channel": channel, "purpose": purpose, "regime": regime_for(overrides, channel, purpose),
                        "allowed": len(blocked) < len(mine),
                        "reason": None if len(blocked) < len(mine) else next(iter(blocked.values()))})
    return out


# -- the send-time decision -------------------------------------------------------------------------

def decide(*, suppressed: bool, revoked: set[str], granted: set[str], purpose: str, regime: str) -> str | None:
    """The consent rule: why a message of `purpose` must not go, or None. `revoked`/`granted` are the
    purposes the address answered no/yes to on this channel or on every channel."""
    if suppressed:
        return "suppressed"
    if ALL in revoked:
        return "opted_out"
    if purpose in revoked or (regime == OPT_IN and purpose not in granted):
        return "no_marketing_consent" if purpose == MARKETING else "no_consent"
    return None


async def blocked_reason(conn, *, kind: str, address: str, channel: str, purpose: str,
                         compliance: bool = False, regimes: Regimes = ()) -> str | None:
    """Why a send to this address must not happen now, or None when it may (one query).

    Checked at send time by the outbox, so a STOP that arrives after a message was queued still
    stops it. `conn` may be a connection or a pool; `regimes` are the settings' overrides.
    """
    if compliance:
        return None
    reasons = await blocked_reasons(conn, [(kind, address, channel)], purpose, regimes)
    return reasons.get((kind, address, channel))


def facts_join(kind: str, address: str, channel: str) -> str:
    """SQL: a LEFT JOIN LATERAL adding the consent facts of the address that the SQL expressions
    `kind`, `address`, `channel` name: `consent_suppressed`, `consent_revoked`, `consent_granted`
    (what `decide` takes). Per purpose the latest answer counts, on this channel or on every channel
    ('*'); at the same instant the channel's own answer wins; the suppression hash is
    `identity.address_hash` computed in SQL. A query that already reads the rows to
    send (the outbox's claim) reads their consent in the same round trip."""
    return f"""LEFT JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM suppressions
                       WHERE address_hash = encode(sha256(convert_to({kind} || ':' || {address}, 'UTF8')), 'hex'))
                   AS consent_suppressed,
               coalesce(array_agg(x.purpose) FILTER (WHERE NOT x.granted), '{{}}') AS consent_revoked,
               coalesce(array_agg(x.purpose) FILTER (WHERE x.granted), '{{}}') AS consent_granted
        FROM (SELECT DISTINCT ON (cf.purpose) cf.purpose, cf.granted FROM consents cf
              WHERE cf.address_kind = {kind} AND cf.address = {address} AND cf.channel IN ({channel}, '*')
              ORDER BY cf.purpose, cf.updated_at DESC, cf.channel = '*') x) consent_facts ON true"""


def decide_from_facts(row, *, purpose: str, channel: str, regimes: Regimes = ()) -> str | None:
    """`decide` on a row that carries the columns of `facts_join`."""
    return decide(suppressed=row["consent_suppressed"], revoked=set(row["consent_revoked"]),
                  granted=set(row["consent_granted"]), purpose=purpose, regime=regime_for(regimes, channel, purpose))


async def blocked_reasons(conn, targets: list[tuple[str, str, str]], purpose: str,
                          regimes: Regimes = ()) -> dict:
    """For many (kind, address, channel) at once: {target: reason} for the blocked ones (one query)."""
    if not targets:
        return {}
    rows = await conn.fetch(
        f"""SELECT t.kind, t.address, t.channel, consent_facts.*
            FROM unnest($1::text[], $2::text[], $3::text[]) AS t(kind, address, channel)
            {facts_join("t.kind", "t.address", "t.channel")}""",
        [t[0] for t in targets], [t[1] for t in targets], [t[2] for t in targets])
    out = {}
    for r in rows:
        reason = decide_from_facts(r, purpose=purpose, channel=r["channel"], regimes=regimes)
        if reason:
            out[(r["kind"], r["address"], r["channel"])] = reason
    return out
