"""Each channel's default inbox stands for the sender in settings (its provider and address), so the
two README commands need no set-up; synced when a process starts."""
from __future__ import annotations

import asyncpg

from gateway.app.log import get_logger
from gateway.channels.modes import whatsapp_provider
from gateway.channels.senders import sending_address
from gateway.domain.identity import AddressError
from gateway.domain.types import Channel
from gateway.inboxes.model import PROVIDERS, normalize_address

log = get_logger(__name__)


def settings_sender(settings, channel: str) -> tuple[str, str | None]:
    """(provider, address) of a channel's sender in settings: what its default inbox stands for."""
    provider = "meta" if channel == "whatsapp" and whatsapp_provider(settings) == "cloud" else PROVIDERS[channel][0]
    return provider, sending_address(settings, Channel(channel))


async def sync_defaults(pool, settings) -> None:
    """Each channel's default inbox exists and, unless an admin gave it an address, stands for the
    sender in settings (provider and address), so a fresh install needs no set-up. Safe when several
    processes start at once (each statement stands alone; a lost race changes nothing)."""
    for channel, name in (("sms", "SMS"), ("whatsapp", "WhatsApp"), ("email", "Email"), ("webchat", "Web chat"),
                          ("api", "API")):
        provider, raw = settings_sender(settings, channel)
        try:
            address = normalize_address(channel, provider, raw) if raw else None
        except AddressError:
            address = None
        try:
            await pool.execute(
                """INSERT INTO inboxes (name, channel, provider, is_default, address_from_settings)
                   SELECT $1 || CASE WHEN EXISTS (SELECT 1 FROM inboxes WHERE name = $1) THEN ' (default)'
                                ELSE '' END, $2, $3, true, true
                   WHERE NOT EXISTS (SELECT 1 FROM inboxes WHERE channel = $2 AND is_default)
                   ON CONFLICT DO NOTHING""", name, channel, provider)
            # an inbox an admin made of the settings' address answers for it; the default then has none
            await pool.execute(
                """UPDATE inboxes d SET provider = $2, address = a.address, updated_at = now()
                   FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM inboxes o WHERE o.channel = $1 AND o.address = $3
                                                  AND NOT o.is_default) THEN NULL ELSE $3 END AS address) a
                   WHERE d.channel = $1 AND d.is_default AND d.address_from_settings
                     AND (d.provider, d.address) IS DISTINCT FROM ($2, a.address)""", channel, provider, address)
        except asyncpg.UniqueViolationError as exc:   # another process or an admin got there first
            log.warning("default inbox not synced from settings", channel=channel, error=str(exc))
