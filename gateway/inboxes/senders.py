"""The sender of a message that leaves from an inbox: the channel's own sender, unless the inbox has
its own credentials or another provider than the channel's sender, then one built for it (kept while
the inbox is unchanged).

Inbox rows are re-read at most every `ttl` seconds per inbox, so a PATCH takes effect everywhere
within that time without a query per send.
"""
from __future__ import annotations

import time

from gateway.app.log import get_logger
from gateway.channels.registry import CHANNELS, parts
from gateway.domain.types import Channel
from gateway.inboxes import secrets

log = get_logger(__name__)


class InboxSenders:
    def __init__(self, pool, settings, http, fetcher=None, *, ttl: float = 10.0, channels=CHANNELS):
        self.pool, self.settings, self.http, self.fetcher, self.ttl = pool, settings, http, fetcher, ttl
        # provider (an inbox row's) -> its channel package's builder (`<package>.sender.INBOX_SENDERS`)
        self.builders = {provider: build for table in parts(channels, "sender", "INBOX_SENDERS", required=False)
                         for provider, build in table.items()}
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
        when settings enable its provider (a sandbox channel stays a sandbox; each builder checks)."""
        s = self.settings
        creds: dict = {}
        if row["credentials"] is not None:
            creds = secrets.unseal(s.secret_key, row["credentials"]) or {}
            if not creds:
                log.warning("inbox credentials cannot be read (sealed under another secret key); "
                            "using the provider's settings", inbox_id=inbox_id, channel=row["channel"])
        build = self.builders.get(row["provider"])
        if build is None:
            return None
        try:
            return build(s, self.http, self.fetcher, Channel(row["channel"]), row["address"], creds)
        except (ValueError, TypeError) as exc:   # e.g. no account to send with: the channel's sender
            log.warning("inbox sender not built; using the channel's", channel=row["channel"], error=str(exc))
        return None
