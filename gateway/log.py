"""structlog set-up: JSON when not on a terminal, pretty on a terminal.

Context (conversation_id, channel, message_id) is bound per unit of work with
`structlog.contextvars.bound_contextvars(...)`. A processor masks known secret fields so that a
careless `log.info(..., token=...)` never writes a secret.
"""
from __future__ import annotations

import logging
import sys

import structlog

_SECRET_KEYS = {"password", "token", "auth_token", "access_token", "app_secret", "secret",
                "authorization", "api_key", "signature", "secret_key"}


def _mask_secrets(_, __, event_dict):
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS and event_dict[key]:
            event_dict[key] = "***"
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    for noisy in ("aiohttp.access", "asyncio", "pgserver", "pgserver.postgres_server", "pgserver.utils"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None):
    return structlog.get_logger(name) if name else structlog.get_logger()
