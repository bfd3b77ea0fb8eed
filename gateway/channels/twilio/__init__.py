"""Twilio Programmable Messaging: SMS, MMS and WhatsApp via Twilio (adapter + REST sender)."""
