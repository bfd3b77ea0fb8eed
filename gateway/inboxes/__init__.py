"""Inboxes: our addresses as data, one per address on one channel and provider.

An inbox is a Twilio number or Messaging Service, a WhatsApp phone number id, a mailbox, a chat
site or the API channel, with its own rules (start flow, escalation team, business hours, consent
scope) and optional credentials. Each channel has a default inbox standing for the sender in
settings. Inbound messages record the inbox they were addressed to (`addresses_of` gives the
candidates, the ingest function matches them); a reply leaves from the inbox the customer last
wrote to on that channel (`sending_inbox`).

    model    pure rules: providers per channel, address normalization, inbound candidates
    store    SQL: list, create, change, delete, the defaults synced from settings, the sending inbox
    secrets  per-inbox credentials, encrypted with a key derived from the secret key
"""


class InboxRefused(Exception):
    """A change or a choice of inbox refused: `kind` not_found, conflict or invalid (the API answers
    404, 409, 422), with a machine `code` and a message naming the problem."""

    def __init__(self, kind: str, code: str = "not_found", message: str = "no such inbox"):
        super().__init__(message)
        self.kind, self.code, self.message = kind, code, message
