"""The outbox: outbound messages written with the state change that caused them, delivered by
`OutboxSender` (see sender.py for the guarantees), with dead letters listed and requeued here."""
from gateway.pipeline.outbox.sender import OutboxSender, backoff_delay

__all__ = ["OutboxSender", "backoff_delay"]
