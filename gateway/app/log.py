"""structlog set-up: every log line of the process, ours and every library's, goes one way.

JSON lines when not on a terminal (pretty on a terminal). Libraries log through the standard
`logging` module (the flow engine's `transitions`, the aiosmtpd SMTP listener, aiohttp, asyncio);
one handler on the root logger renders their records with the same processors as ours, so no
plain-text line is mixed into the JSON.

Context (conversation_id, channel, message_id) is bound per unit of work with
`structlog.contextvars.bound_contextvars(...)`. Processors mask known secret fields, so that a
careless `log.info(..., token=...)` never writes a secret, and, unless GATEWAY_LOG_ADDRESSES=show,
customers' email addresses and phone numbers, wherever they appear in a line.
"""
from __future__ import annotations

import logging
import re
import sys

import structlog

_SECRET_KEYS = {"password", "token", "auth_token", "access_token", "app_secret", "secret",
                "authorization", "api_key", "signature", "secret_key"}

# Fields that hold a customer's address whatever it looks like (a WhatsApp user id, digits without
# "+", a chat visitor id); emails and "+" phone numbers are found anywhere by their shape.
_ADDRESS_KEYS = {"to", "from", "from_", "recipient", "address", "phone", "wa_id", "to_address",
                 "sender_address", "recipient_address", "mail_from", "rcpt_tos", "recipients", "visitor_id"}
_EMAIL = re.compile(r"([A-Za-z0-9._%+=-])[A-Za-z0-9._%+=-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
_PHONE = re.compile(r"(\+\d{2})\d{4,11}(\d{2})\b")
# Libraries whose routine chatter (per request, per transition, per SMTP command) shows only at debug
_QUIET = ("aiohttp.access", "asyncio", "transitions", "mail.log", "pgserver", "pgserver.postgres_server",
          "pgserver.utils")


HANDLER_NAME = "gateway"


def _mask_secrets(_, __, event_dict):
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS and event_dict[key]:
            event_dict[key] = "***"
    return event_dict


def mask_text(text: str) -> str:
    """Emails and E.164 phone numbers in free text, masked: d***@example.com, +14*******00."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: f"{m.group(1)}{'*' * (len(m.group(0)) - 5)}{m.group(2)}", text)


def _mask_address(value: str) -> str:
    masked = mask_text(value)
    if masked != value or len(value) <= 4:
        return masked
    return value[:2] + "***"      # an address of another shape (a WhatsApp user id, a chat id)


def _masked(value, address: bool = False):
    if isinstance(value, str):
        return _mask_address(value) if address else mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_masked(v, address) for v in value]
    return value


def _mask_addresses(_, __, event_dict):
    for key, value in list(event_dict.items()):
        if not key.startswith("_"):
            event_dict[key] = _masked(value, key.lower() in _ADDRESS_KEYS)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", addresses: str = "mask") -> None:
    """`addresses`: "mask" (default) or "show" (for debugging, customers' addresses in clear)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared = [structlog.contextvars.merge_contextvars, structlog.stdlib.add_logger_name,
              structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
              _mask_secrets]
    if addresses != "show":
        shared.append(_mask_addresses)
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
                    renderer])
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:   # configured again
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)   # Python warnings become log records too
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None):
    return structlog.get_logger(name) if name else structlog.get_logger()
