"""A journey send at send time: guards, channel choice with fallback, and the outbound message.

Guards run when the step fires, not when it was scheduled: the contact busy with an agent or mid
flow (postpone, then skip), quiet hours in the contact's zone (reschedule to the next allowed
minute), the daily frequency cap with journey priority (skip), consent/suppression/WhatsApp window
per channel (skip the channel, or the send when none is left). The outbox checks consent once more
when it actually sends. Every skipped send is written to journey_skips with its reason.
"""
from __future__ import annotations

import dataclasses
import html as html_lib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.app.log import get_logger
from gateway.domain import preferences, routing, thread, timers
from gateway.domain.types import Channel, Purpose
from gateway.inboxes import store as inboxes
from gateway.journeys import guards
from gateway.journeys.model import Journey, Policy, SendStep
from gateway.journeys.templates import Rendered, Template

CONSENT_REASONS = {"opted_out", "no_marketing_consent"}
FALLBACK_TIMER = "journey_fallback"

log = get_logger(__name__)


@dataclass
class Contact:
    id: int
    name: str | None
    external_id: str | None
    locale: str | None
    timezone: str | None
    attributes: dict
    phone: str | None

    def context(self, event_properties: dict) -> dict:
        """What templates and conditions see: event.*, attributes.*, contact.*."""
        return {"event": event_properties or {}, "attributes": self.attributes,
                "contact": {"id": self.id, "name": self.name, "locale": self.locale, "timezone": self.timezone,
                            "external_id": self.external_id}}

    def zone(self, policy: Policy):
        return guards.contact_zone(self.timezone, self.phone, policy.default_timezone)


async def load_contact(conn: asyncpg.Connection, contact_id: int) -> Contact:
    row = await conn.fetchrow(
        """SELECT c.id, c.name, c.external_id, c.locale, c.timezone, c.attributes,
                  (SELECT address FROM identities i WHERE i.contact_id = c.id AND i.kind = 'phone'
                   ORDER BY i.id LIMIT 1) AS phone
           FROM contacts c WHERE c.id = $1""", contact_id)
    return Contact(row["id"], row["name"], row["external_id"], row["locale"], row["timezone"],
                   dict(row["attributes"] or {}), row["phone"])


async def record_skip(conn: asyncpg.Connection, enrollment, step: str, reason: str, now: datetime,
                      details: dict | None = None) -> None:
    await conn.execute(
        """INSERT INTO journey_skips (enrollment_id, journey, step, reason, details, at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        enrollment["id"], enrollment["journey"], step, reason, details or {}, now)
    log.info("journey send skipped", journey=enrollment["journey"], step=step, reason=reason,
             enrollment_id=enrollment["id"], conversation_id=enrollment.get("conversation_id"), details=details)


async def marketing_sent(conn: asyncpg.Connection, contact_id: int, start: datetime, end: datetime) -> int:
    """Marketing nudges to a contact in [start, end): what the frequency cap counts.

    A journey nudge counts once however many channels it took (fallbacks are the same nudge), by
    the time the journey queued it; other marketing messages (campaigns) count by creation time.
    Messages that failed or were never sent (skipped at send time) do not count.
    """
    return await conn.fetchval(
        """SELECT
             (SELECT count(DISTINCT (s.enrollment_id, s.step)) FROM journey_sends s
                JOIN journey_enrollments e ON e.id = s.enrollment_id
                JOIN messages m ON m.id = s.message_id
              WHERE e.contact_id = $1 AND s.purpose = 'marketing' AND s.sent_at >= $2 AND s.sent_at < $3
                AND coalesce(m.status, 'queued') NOT IN ('failed', 'undelivered'))
           + (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE c.contact_id = $1 AND m.direction = 'out' AND m.purpose = 'marketing'
                AND m.created_at >= $2 AND m.created_at < $3
                AND coalesce(m.status, 'queued') NOT IN ('failed', 'undelivered')
                AND NOT EXISTS (SELECT 1 FROM journey_sends s WHERE s.message_id = m.id))""",
        contact_id, start, end)


async def competing_priorities(conn: asyncpg.Connection, enrollment, until: datetime) -> list[tuple[str, int]]:
    """(journey, priority) of the contact's other active journeys with a step due before `until`."""
    rows = await conn.fetch(
        """SELECT DISTINCT e.journey, e.priority FROM journey_enrollments e
           JOIN timers t ON t.conversation_id = e.conversation_id AND t.ref_id = e.id
                        AND t.kind = 'journey_step' AND t.state = 'pending'
           WHERE e.contact_id = $1 AND e.status = 'active' AND e.id <> $2 AND e.journey <> $3
             AND e.variant IS DISTINCT FROM 'holdout' AND t.due_at < $4""",
        enrollment["contact_id"], enrollment["id"], enrollment["journey"], until)
    return [(r["journey"], r["priority"]) for r in rows]


@dataclass
class Delivery:
    send_id: int | None = None
    channel: Channel | None = None
    unavailable: dict | None = None      # channel -> reason, when nothing could be sent

    @property
    def skip_reason(self) -> str:
        reasons = set((self.unavailable or {}).values())
        if "suppressed" in reasons:
            return "suppressed"
        if reasons and reasons <= CONSENT_REASONS | {"no_address", "not_for_marketing"} and reasons & CONSENT_REASONS:
            return "no_consent"
        return "no_channel"


def with_preferences_footer(rendered: Rendered, url: str) -> Rendered:
    """A marketing email carries the preference page (beside the List-Unsubscribe one-click header),
    unless its template already placed `{preferences_url}`."""
    if url in rendered.text or (rendered.html and html_lib.escape(url) in rendered.html):
        return rendered
    html = rendered.html
    if html:
        html += (f'<p style="font-size:12px;color:#666">Choose what we send you: '
                 f'<a href="{html_lib.escape(url)}">your preferences</a></p>')
    return dataclasses.replace(rendered, text=f"{rendered.text}\n\n--\nChoose what we send you: {url}", html=html)


async def deliver(conn: asyncpg.Connection, *, journey: Journey, enrollment, step: SendStep, channels: list[Channel],
                  attempt: int, contact: Contact, now: datetime, policy: Policy, route_policy: routing.Policy,
                  effects: thread.Effects, settings=None) -> Delivery:
    """Queue the step's message on the first usable channel of `channels` and record the send.

    A channel is usable when the contact has an address for it, it has a provider (`route_policy`),
    consent allows the purpose, and (WhatsApp) the 24 h window is open, or else the template has an
    approved WhatsApp template (or the deployment a re-engagement one).
    """
    template: Template = journey.templates[step.template]
    purpose = Purpose.MARKETING if journey.is_marketing else Purpose.TRANSACTIONAL
    wa = template.variant(Channel.WHATSAPP, contact.locale)
    # probe without templates: a WhatsApp route then means the 24 h window is open
    options = await thread.route_options(conn, enrollment["conversation_id"], purpose=purpose, now=now,
                                         policy=dataclasses.replace(route_policy, whatsapp_template_available=False))
    unavailable: dict[str, str] = {}
    for i, channel in enumerate(channels):
        use_wa_template = False
        if channel not in options.routes:
            reason = options.unavailable.get(channel, "no_address")
            window_closed = channel is Channel.WHATSAPP and reason == "whatsapp_window_closed"
            if window_closed and wa is not None and wa.wa_template:
                use_wa_template = True
            elif not (window_closed and route_policy.whatsapp_template_available):
                unavailable[channel.value] = reason
                continue
        context = contact.context(enrollment["data"].get("event", {}))
        if settings is not None:
            context["preferences_url"] = preferences.link_for(settings, contact.id)["url"]
        rendered = template.render(channel, contact.locale, context)
        if channel is Channel.EMAIL and purpose is Purpose.MARKETING and context.get("preferences_url"):
            rendered = with_preferences_footer(rendered, context["preferences_url"])
        wa_template = rendered.template if channel is Channel.WHATSAPP and (use_wa_template or not (wa and wa.text)) else None
        inbox_id = await inboxes.named(conn, step.inboxes, channel.value) if step.inboxes else None
        try:
            message_id = await thread.queue_outbound(
                conn, enrollment["conversation_id"], text=rendered.text, author_type="journey", purpose=purpose,
                channel=channel, buttons=rendered.buttons, template=wa_template, subject=rendered.subject,
                html=rendered.html, effects=effects, policy=route_policy, inbox_id=inbox_id,
                extra={"journey": {"name": journey.name, "step": step.id, "enrollment_id": enrollment["id"],
                                   "attempt": attempt}})
        except thread.NoRoute as exc:
            unavailable[channel.value] = exc.reasons.get(channel.value, "no_route")
            continue
        remaining = [c.value for c in channels[i + 1:]]
        fallback_after = step.fallback_after or policy.fallback_after
        send_id = await conn.fetchval(
            """INSERT INTO journey_sends (enrollment_id, journey, step, attempt, message_id, channel, remaining,
                   fallback_after, purpose, sent_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
            enrollment["id"], journey.name, step.id, attempt, message_id, channel.value, remaining,
            fallback_after, purpose.value, now)
        if remaining:
            await schedule_fallback(conn, enrollment, send_id, now + fallback_after)
        effects.emit("journey.sent", journey=journey.name, step=step.id, enrollment_id=enrollment["id"],
                     message_id=message_id, channel=channel.value, conversation_id=enrollment["conversation_id"])
        log.info("journey send queued", journey=journey.name, step=step.id, enrollment_id=enrollment["id"],
                 conversation_id=enrollment["conversation_id"], message_id=message_id, channel=channel.value,
                 attempt=attempt, unavailable=unavailable or None)
        return Delivery(send_id=send_id, channel=channel)
    return Delivery(unavailable=unavailable)


async def schedule_fallback(conn: asyncpg.Connection, enrollment, send_id: int, due_at: datetime) -> None:
    await timers.schedule(conn, kind=FALLBACK_TIMER, due_at=due_at, payload={"send_id": send_id},
                          conversation_id=enrollment["conversation_id"], ref_id=enrollment["id"],
                          dedupe_key=f"{FALLBACK_TIMER}:{send_id}:{due_at.isoformat()}")


async def cancel_fallbacks(conn: asyncpg.Connection, enrollment_id: int, conversation_id: int,
                           send_id: int | None = None) -> None:
    await timers.cancel(conn, kind=FALLBACK_TIMER, conversation_id=conversation_id, ref_id=enrollment_id,
                        payload={"send_id": send_id} if send_id is not None else None)


async def cancel_unsent(conn: asyncpg.Connection, message_ids: list[int], reason: str) -> int:
    """Withdraw queued messages the outbox has not picked up yet (superseded or journey left)."""
    if not message_ids:
        return 0
    withdrawn = await conn.fetch(
        """UPDATE outbox SET state = 'skipped', last_error = $2, updated_at = now()
           WHERE message_id = ANY($1::bigint[]) AND state = 'pending' RETURNING message_id""",
        message_ids, reason)
    ids = [r["message_id"] for r in withdrawn]
    if ids:
        await conn.execute(
            """UPDATE messages SET status = 'failed', error_code = $2, error_message = 'withdrawn before sending',
                   status_updated_at = now() WHERE id = ANY($1::bigint[])""", ids, reason)
    return len(ids)
