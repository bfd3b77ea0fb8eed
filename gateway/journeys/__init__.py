"""Journeys: proactive, event-triggered follow-ups (see gateway.journeys.engine)."""
