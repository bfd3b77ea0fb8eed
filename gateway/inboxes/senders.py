"""The sender of a message that leaves from an inbox: the channel's own sender, unless the inbox has
its own credentials or another provider than the channel's sender, then one built for it (kept while
the inbox is unchanged).

Inbox rows are re-read at most every `ttl` seconds per inbox, so a PATCH takes effect everywhere
within that time without a query per send.
"""
from __future__ import annotations

import time

from gateway.channels.email.sender import smtp_sender
from gateway.channels.twilio.sender import twilio_sender
from gateway.channels.whatsapp.sender import meta_sender
from gateway.inboxes import secrets
from gateway.app.log import get_logger
from gateway.domain.types import Channel

log = get_logger(__name__)


class InboxSenders:
    def __init__(self, pool, settings, http, fetcher=None, *, ttl: float = 10.0):
        self.pool, self.settings, self.http, self.fetcher, self.ttl = pool, settings, http, fetcher, ttl
        self._rows: dict[int, tuple[float, object]] = {}      # inbox id -> (read at, updated_at)
        self._built: dict[tuple[int, object], object] = {}    # (inbox id, updated_at) -> its sender

    async def sender_for(self, inbox_id: int, default):
        """The sender for inbox `inbox_id`; `default` (the channel's) when the inbox needs no own one."""
        seen = self._rows.get(inbox_id)
        if seen is None or time.monotonic() - seen[0] > self.ttl:
            row = await self.pool.fetchrow(
                "SELECT channel, provider, address, credentials, updated_at FROM inboxes WHERE id = $1", inbox_id)
            version = None if row is None or (row["credentials"] is None
                                               and row["provider"] == getattr(default, "provider", None)) \
                else row["updated_at"]
            seen = (time.monotonic(), version)
            self._rows[inbox_id] = seen
            if version is not None and (inbox_id, version) not in self._built:
                for key in [k for k in self._built if k[0] == inbox_id]:
                    del self._built[key]
                self._built[(inbox_id, version)] = self._build(inbox_id, row) or default
        if seen[1] is None:
            return default
        return self._built.get((inbox_id, seen[1]), default)

    def _build(self, inbox_id: int, row):
        """A sender for the inbox, or None (use the channel's): without credentials of its own, only
        when settings enable its provider (a sandbox channel stays a sandbox)."""
        s = self.settings
        creds: dict = {}
        if row["credentials"] is not None:
            creds = secrets.unseal(s.secret_key, row["credentials"]) or {}
            if not creds:
                log.warning("inbox credentials cannot be read (sealed under another secret key); "
                            "using the provider's settings", inbox_id=inbox_id, channel=row["channel"])
        address, channel = row["address"], Channel(row["channel"])
        enabled = {"twilio": s.twilio_enabled, "meta": s.whatsapp_cloud_enabled, "smtp": s.smtp_enabled}
        if not creds and not enabled.get(row["provider"]):
            return None
        try:
            if row["provider"] == "twilio":
                service = address if address and address.startswith("MG") else None
                return twilio_sender(s, self.http, self.fetcher, channel,
                                     account_sid=creds.get("account_sid") or s.twilio_account_sid,
                                     auth_token=creds.get("auth_token") or s.twilio_auth_token,
                                     api_key_sid=creds.get("api_key_sid"),
                                     from_address=None if service else address,
                                     messaging_service_sid=service or s.twilio_messaging_service_sid)
            if row["provider"] == "meta":
                return meta_sender(s, self.http, self.fetcher, phone_number_id=address or s.whatsapp_phone_number_id,
                                   access_token=creds.get("access_token") or s.whatsapp_access_token)
            if row["provider"] == "smtp":
                return smtp_sender(s, hostname=creds.get("host") or s.smtp_host,
                                   port=int(creds.get("port") or s.smtp_port),
                                   username=creds.get("username") or s.smtp_username,
                                   password=creds.get("password") or s.smtp_password,
                                   from_address=address or s.email_from,
                                   message_id_domain=(address or s.email_from or "@localhost").split("@")[-1])
        except (ValueError, TypeError) as exc:   # e.g. no account to send with: the channel's sender
            log.warning("inbox sender not built; using the channel's", channel=row["channel"], error=str(exc))
        return None
