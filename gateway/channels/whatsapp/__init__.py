"""Meta WhatsApp Cloud API (adapter + Graph API sender)."""
