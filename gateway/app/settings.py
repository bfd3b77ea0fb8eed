"""Settings: read from the environment (and an optional .env file) once, into one frozen object.

Names are fixed by the design contract; see README for the full list. Validation happens here, at
start, with messages that say which variable is wrong and why.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


SECRET_FIELDS = frozenset({
    "twilio_auth_token", "business_api_token", "whatsapp_access_token", "whatsapp_app_secret", "whatsapp_verify_token",
    "smtp_password", "email_webhook_key", "twilio_webhook_shared_key", "admin_token", "secret_key", "api_channel_webhook_secret",
    "chat_identity_secret", "metrics_token",
})


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    database_pooler: str = "none"         # none | transaction (PgBouncer pool_mode=transaction)
    database_direct_url: str | None = None  # a direct DSN for migrations and session work
    redis_url: str | None = None
    data_dir: Path = Path(".gateway")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str | None = None
    log_level: str = "info"
    log_format: str = "auto"              # auto | json | console
    log_addresses: str = "mask"           # mask | show: customers' emails and phone numbers in logs
    redis_prefix: str = "gw"
    queue_partitions: int = 8
    worker_concurrency: int = 2           # batches of turns in flight per worker process
    worker_batch: int = 32                # conversations whose next message one transaction takes
    event_loop: str = "uvloop"            # uvloop | asyncio: the loop `gateway run/api/worker` serve on
    secret_key: str = ""                  # signs chat sessions, thread tokens, unsubscribe links
    admin_token: str | None = None
    default_handler: str = "flow"         # flow | agent | echo
    default_flow: str = "support"
    channel_flows: str = ""               # "sms=support,email=email_support": start flow per channel
    flows_dir: Path | None = None
    business_api_base: str | None = None
    business_api_token: str | None = None   # sent as "Authorization: Bearer ..." to business_api_base only
    max_body_bytes: int = 1024 * 1024
    # Twilio
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_whatsapp_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    twilio_whatsapp_template_sid: str | None = None
    twilio_content_sids: str = ""             # "cart_reminder=HX...,welcome=HX...": template name -> Content SID
    twilio_webhook_shared_key: str | None = None   # secret of a SharedKey (HMAC-SHA256 webhook signatures)
    # Meta WhatsApp Cloud API
    whatsapp_access_token: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"
    whatsapp_reengage_template: str | None = None
    whatsapp_template_language: str = "en_US"
    # Email
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: str = "auto"                # auto | starttls | tls | none
    email_from: str | None = None
    email_from_name: str | None = None    # the business's name: From display name of outbound mail
    email_reply_domain: str | None = None
    smtp_listen_port: int | None = None
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_max_connections: int = 16   # SMTP sessions at once (each may hold a 25 MiB message)
    email_webhook_key: str | None = None
    email_reply_ceiling: int = 5          # automatic email replies per conversation per hour
    email_max_bytes: int = 30 * 1024 * 1024   # an inbound email webhook post that carries the key
    email_large_bodies: int = 4           # email posts above max_body_bytes read at once
    email_trusted_authserv_ids: tuple[str, ...] = ()   # relays whose Authentication-Results count
    # Fetching URLs that came from outside (provider media): see gateway/infra/guarded_fetch.py
    fetch_allow_networks: tuple[str, ...] = ()   # non-public CIDRs media may come from (tests: 127.0.0.0/8)
    fetch_schemes: tuple[str, ...] = ("https",)
    fetch_max_bytes: int = 25 * 1024 * 1024
    fetch_timeout: float = 30.0
    fetch_max_redirects: int = 5
    twilio_media_hosts: tuple[str, ...] = ("api.twilio.com", "media.twiliocdn.com")
    whatsapp_media_hosts: tuple[str, ...] = ("graph.facebook.com", "lookaside.fbsbx.com")
    # API channel
    api_channel_webhook_url: str | None = None
    api_channel_webhook_secret: str | None = None
    # Web chat
    chat_allowed_origins: tuple[str, ...] = ()
    chat_identity_secret: str | None = None
    chat_identity_conflict: str = "refuse"   # a token naming several contacts: refuse | merge
    # Agent console sign-in
    console_session_hours: float = 12.0   # a console session ends this long after sign-in
    console_invite_hours: float = 72.0    # an invite link works this long
    login_max_failures_account: int = 5   # failed sign-ins per account per window
    login_max_failures_address: int = 50  # failed sign-ins per client address per window
    login_window_seconds: int = 900
    # Consent / compliance texts
    help_text: str = "Reply STOP to unsubscribe, START to resubscribe. Write to us any time for help."
    # Satisfaction survey: how long after it is sent a rating counts as its answer, and the thanks
    csat_window_hours: float = 72.0
    csat_thanks: str = "Thank you for your feedback!"
    # overrides of the consent regimes, (channel, purpose, opt_in|opt_out); defaults in gateway.domain.consent
    consent_regimes: tuple[tuple[str, str, str], ...] = ()
    global_stop_words: tuple[str, ...] = ("STOPALL",)   # single words that opt out of every channel
    preferences_link_hours: float = 720.0    # a preference-page link works this long
    # Outbox
    outbox_max_attempts: int = 8
    outbox_base_delay: float = 2.0
    outbox_max_delay: float = 900.0
    outbox_batch: int = 200
    outbox_concurrency: int = 32         # sends in flight per provider sender, per process
    outbox_max_concurrency: int = 256    # how far that grows while a slow provider has work waiting
    outbox_orphan_after: float = 10.0    # seconds without a heartbeat before a sender's rows are recovered
    twilio_timeout: float = 10.0         # seconds a provider call may take before it counts as failed
    whatsapp_timeout: float = 10.0
    smtp_timeout: float = 30.0
    rate_limit_per_second: float = 0.0   # per sender; 0 means off
    rate_limit_burst: int = 10
    rate_limits: str = ""                # per sender: "sms:+15550001111=1,whatsapp:+1555...=20"
    sweeper_interval: float = 5.0
    reclaim_idle_ms: int = 30_000
    # Operations and rights
    metrics_token: str | None = None      # /metrics wants `Authorization: Bearer <it>` when set
    metrics_cache_seconds: float = 15.0   # the database-derived gauges are recounted at most this often
    rights_recheck_seconds: float = 30.0  # open sockets re-check their rights at least this often (<= 60)
    # Data retention (gateway/retention.py); 0 days keeps forever
    retention_messages_days: float = 0.0
    retention_channel_days: str = ""        # "email=365,sms=90": per channel, over retention_messages_days
    retention_attachments_days: float = 0.0
    retention_events_days: float = 0.0
    retention_audit_days: float = 0.0
    retention_interval: float = 3600.0      # seconds between retention passes
    retention_batch: int = 500              # rows per batch (one short transaction each)
    retention_pause: float = 0.05           # seconds between batches
    rollup_interval: float = 300.0          # seconds between passes of the metrics' daily rollups
    redis_max_connections: int = 200      # per process, per pool; callers wait for a free one
    redis_pool_timeout: float = 10.0      # seconds a caller waits for a free Redis connection

    # -- channel availability (sandbox when credentials are absent) -------------------------
    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def whatsapp_cloud_enabled(self) -> bool:
        return bool(self.whatsapp_access_token and self.whatsapp_phone_number_id)

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def session_database_url(self) -> str | None:
        """Where work that needs a whole session goes (migrations, bulk loads): the direct URL when
        set, else the (possibly pooled) GATEWAY_DATABASE_URL."""
        return self.database_direct_url or self.database_url

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def redacted(self) -> dict:
        """A loggable view: secrets masked, DSN passwords removed."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            elif f.name in ("database_url", "database_direct_url", "redis_url") and value:
                value = _strip_password(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _strip_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url


def read_dotenv(path: Path) -> dict[str, str]:
    """Minimal .env reader: KEY=VALUE lines, optional quotes, # comments."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


# environment variable -> (field, parser)
def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _port(name: str, raw: str) -> int:
    value = _int(name, raw)
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a TCP port (0-65535), got {value}")
    return value


def _url(schemes: tuple[str, ...]):
    def parse(name: str, raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path or parsed.query):
            raise SettingsError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
                                f", got {_strip_password(raw)!r}")
        return raw
    return parse


def _str(name: str, raw: str) -> str:
    return raw


def _choice(*options: str):
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise SettingsError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return value
    return parse


def _networks(name: str, raw: str) -> tuple[str, ...]:
    import ipaddress

    out = []
    for part in _csv(name, raw):
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(f"{name} must be a comma-separated list of networks (CIDR), got {part!r}") from None
    return tuple(out)


def _csv(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_HTTP = _url(("http", "https"))


def _checked_by(parser_path: str):
    """A setting kept as written but checked at start by `module:function` (which raises ValueError)."""
    def parse(name: str, raw: str) -> str:
        import importlib

        module, _, function = parser_path.partition(":")
        try:
            getattr(importlib.import_module(module), function)(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
        return raw
    return parse


def _consent_regimes(name: str, raw: str) -> tuple[tuple[str, str, str], ...]:
    from gateway.domain.consent import parse_regimes

    try:
        return parse_regimes(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def parse_content_sids(raw: str) -> dict[str, str]:
    """"cart_reminder=HXab...,welcome=HXcd..." -> {"cart_reminder": "HXab...", ...}."""
    out = {}
    for part in filter(None, (p.strip() for p in (raw or "").split(","))):
        template, _, sid = (x.strip() for x in part.partition("="))
        if not template or not re.fullmatch(r"HX[0-9a-fA-F]{32}", sid):
            raise ValueError(f"{part!r} is not template_name=HX followed by 32 hex digits")
        out[template] = sid
    return out


_rate_limits = _checked_by("gateway.pipeline.ratelimit:parse_limits")
_channel_days = _checked_by("gateway.retention:parse_channel_days")


ENV: dict[str, tuple[str, object]] = {
    "GATEWAY_DATABASE_URL": ("database_url", _url(("postgres", "postgresql"))),
    "GATEWAY_DATABASE_POOLER": ("database_pooler", _choice("none", "transaction")),
    "GATEWAY_DATABASE_DIRECT_URL": ("database_direct_url", _url(("postgres", "postgresql"))),
    "GATEWAY_REDIS_URL": ("redis_url", _url(("redis", "rediss", "unix", "redis+cluster", "redis+clusters"))),
    "GATEWAY_DATA_DIR": ("data_dir", lambda n, r: Path(r)),
    "GATEWAY_HTTP_HOST": ("http_host", _str),
    "GATEWAY_HTTP_PORT": ("http_port", _port),
    "GATEWAY_PUBLIC_URL": ("public_url", _HTTP),
    "GATEWAY_LOG_LEVEL": ("log_level", _choice("debug", "info", "warning", "error")),
    "GATEWAY_LOG_FORMAT": ("log_format", _choice("auto", "json", "console")),
    "GATEWAY_LOG_ADDRESSES": ("log_addresses", _choice("mask", "show")),
    "GATEWAY_REDIS_PREFIX": ("redis_prefix", _str),
    "GATEWAY_QUEUE_PARTITIONS": ("queue_partitions", _int),
    "GATEWAY_WORKER_CONCURRENCY": ("worker_concurrency", _int),
    "GATEWAY_WORKER_BATCH": ("worker_batch", _int),
    "GATEWAY_EVENT_LOOP": ("event_loop", _choice("uvloop", "asyncio")),
    "GATEWAY_SECRET_KEY": ("secret_key", _str),
    "GATEWAY_ADMIN_TOKEN": ("admin_token", _str),
    "GATEWAY_DEFAULT_HANDLER": ("default_handler", _choice("flow", "agent", "echo")),
    "GATEWAY_DEFAULT_FLOW": ("default_flow", _str),
    "GATEWAY_FLOWS_DIR": ("flows_dir", lambda n, r: Path(r)),
    "GATEWAY_CHANNEL_FLOWS": ("channel_flows", _str),
    "GATEWAY_BUSINESS_API_BASE": ("business_api_base", _HTTP),
    "GATEWAY_BUSINESS_API_TOKEN": ("business_api_token", _str),
    "GATEWAY_MAX_BODY_BYTES": ("max_body_bytes", _int),
    "TWILIO_ACCOUNT_SID": ("twilio_account_sid", _str),
    "TWILIO_AUTH_TOKEN": ("twilio_auth_token", _str),
    "TWILIO_FROM_NUMBER": ("twilio_from_number", _str),
    "TWILIO_WHATSAPP_FROM": ("twilio_whatsapp_from", _str),
    "TWILIO_MESSAGING_SERVICE_SID": ("twilio_messaging_service_sid", _str),
    "GATEWAY_TWILIO_API_BASE": ("twilio_api_base", _HTTP),
    "GATEWAY_TWILIO_WHATSAPP_TEMPLATE_SID": ("twilio_whatsapp_template_sid", _str),
    "GATEWAY_TWILIO_CONTENT_SIDS": ("twilio_content_sids", _checked_by("gateway.app.settings:parse_content_sids")),
    "TWILIO_WEBHOOK_SHARED_KEY": ("twilio_webhook_shared_key", _str),
    "WHATSAPP_ACCESS_TOKEN": ("whatsapp_access_token", _str),
    "WHATSAPP_APP_SECRET": ("whatsapp_app_secret", _str),
    "WHATSAPP_VERIFY_TOKEN": ("whatsapp_verify_token", _str),
    "WHATSAPP_PHONE_NUMBER_ID": ("whatsapp_phone_number_id", _str),
    "GATEWAY_WHATSAPP_API_BASE": ("whatsapp_api_base", _HTTP),
    "GATEWAY_WHATSAPP_REENGAGE_TEMPLATE": ("whatsapp_reengage_template", _str),
    "GATEWAY_WHATSAPP_TEMPLATE_LANGUAGE": ("whatsapp_template_language", _str),
    "GATEWAY_SMTP_HOST": ("smtp_host", _str),
    "GATEWAY_SMTP_PORT": ("smtp_port", _port),
    "GATEWAY_SMTP_USERNAME": ("smtp_username", _str),
    "GATEWAY_SMTP_PASSWORD": ("smtp_password", _str),
    "GATEWAY_SMTP_TLS": ("smtp_tls", _choice("auto", "starttls", "tls", "none")),
    "GATEWAY_EMAIL_FROM": ("email_from", _str),
    "GATEWAY_EMAIL_FROM_NAME": ("email_from_name", _str),
    "GATEWAY_EMAIL_REPLY_DOMAIN": ("email_reply_domain", _str),
    "GATEWAY_SMTP_LISTEN_PORT": ("smtp_listen_port", _port),
    "GATEWAY_SMTP_LISTEN_HOST": ("smtp_listen_host", _str),
    "GATEWAY_SMTP_LISTEN_MAX_CONNECTIONS": ("smtp_listen_max_connections", _int),
    "GATEWAY_EMAIL_WEBHOOK_KEY": ("email_webhook_key", _str),
    "GATEWAY_EMAIL_REPLY_CEILING": ("email_reply_ceiling", _int),
    "GATEWAY_EMAIL_MAX_BYTES": ("email_max_bytes", _int),
    "GATEWAY_EMAIL_LARGE_BODIES": ("email_large_bodies", _int),
    "GATEWAY_EMAIL_TRUSTED_AUTHSERV_IDS": ("email_trusted_authserv_ids", _csv),
    "GATEWAY_FETCH_ALLOW_NETWORKS": ("fetch_allow_networks", _networks),
    "GATEWAY_FETCH_SCHEMES": ("fetch_schemes", _csv),
    "GATEWAY_FETCH_MAX_BYTES": ("fetch_max_bytes", _int),
    "GATEWAY_FETCH_TIMEOUT": ("fetch_timeout", _float),
    "GATEWAY_FETCH_MAX_REDIRECTS": ("fetch_max_redirects", _int),
    "GATEWAY_TWILIO_MEDIA_HOSTS": ("twilio_media_hosts", _csv),
    "GATEWAY_WHATSAPP_MEDIA_HOSTS": ("whatsapp_media_hosts", _csv),
    "GATEWAY_API_CHANNEL_WEBHOOK_URL": ("api_channel_webhook_url", _HTTP),
    "GATEWAY_API_CHANNEL_WEBHOOK_SECRET": ("api_channel_webhook_secret", _str),
    "GATEWAY_CHAT_ALLOWED_ORIGINS": ("chat_allowed_origins", _csv),
    "GATEWAY_CHAT_IDENTITY_SECRET": ("chat_identity_secret", _str),
    "GATEWAY_CHAT_IDENTITY_CONFLICT": ("chat_identity_conflict", _choice("refuse", "merge")),
    "GATEWAY_HELP_TEXT": ("help_text", _str),
    "GATEWAY_CSAT_WINDOW_HOURS": ("csat_window_hours", _float),
    "GATEWAY_CSAT_THANKS": ("csat_thanks", _str),
    "GATEWAY_CONSENT_REGIMES": ("consent_regimes", _consent_regimes),
    "GATEWAY_GLOBAL_STOP_WORDS": ("global_stop_words", lambda n, r: tuple(w.upper() for w in _csv(n, r))),
    "GATEWAY_PREFERENCES_LINK_HOURS": ("preferences_link_hours", _float),
    "GATEWAY_CONSOLE_SESSION_HOURS": ("console_session_hours", _float),
    "GATEWAY_CONSOLE_INVITE_HOURS": ("console_invite_hours", _float),
    "GATEWAY_LOGIN_MAX_FAILURES_ACCOUNT": ("login_max_failures_account", _int),
    "GATEWAY_LOGIN_MAX_FAILURES_ADDRESS": ("login_max_failures_address", _int),
    "GATEWAY_LOGIN_WINDOW_SECONDS": ("login_window_seconds", _int),
    "GATEWAY_OUTBOX_MAX_ATTEMPTS": ("outbox_max_attempts", _int),
    "GATEWAY_OUTBOX_BASE_DELAY": ("outbox_base_delay", _float),
    "GATEWAY_OUTBOX_MAX_DELAY": ("outbox_max_delay", _float),
    "GATEWAY_OUTBOX_CONCURRENCY": ("outbox_concurrency", _int),
    "GATEWAY_OUTBOX_MAX_CONCURRENCY": ("outbox_max_concurrency", _int),
    "GATEWAY_OUTBOX_ORPHAN_AFTER": ("outbox_orphan_after", _float),
    "GATEWAY_TWILIO_TIMEOUT": ("twilio_timeout", _float),
    "GATEWAY_WHATSAPP_TIMEOUT": ("whatsapp_timeout", _float),
    "GATEWAY_SMTP_TIMEOUT": ("smtp_timeout", _float),
    "GATEWAY_RATE_LIMIT_PER_SECOND": ("rate_limit_per_second", _float),
    "GATEWAY_RATE_LIMIT_BURST": ("rate_limit_burst", _int),
    "GATEWAY_RATE_LIMITS": ("rate_limits", _rate_limits),
    "GATEWAY_SWEEPER_INTERVAL": ("sweeper_interval", _float),
    "GATEWAY_RECLAIM_IDLE_MS": ("reclaim_idle_ms", _int),
    "GATEWAY_METRICS_TOKEN": ("metrics_token", _str),
    "GATEWAY_METRICS_CACHE_SECONDS": ("metrics_cache_seconds", _float),
    "GATEWAY_RIGHTS_RECHECK_SECONDS": ("rights_recheck_seconds", _float),
    "GATEWAY_RETENTION_MESSAGES_DAYS": ("retention_messages_days", _float),
    "GATEWAY_RETENTION_CHANNEL_DAYS": ("retention_channel_days", _channel_days),
    "GATEWAY_RETENTION_ATTACHMENTS_DAYS": ("retention_attachments_days", _float),
    "GATEWAY_RETENTION_EVENTS_DAYS": ("retention_events_days", _float),
    "GATEWAY_RETENTION_AUDIT_DAYS": ("retention_audit_days", _float),
    "GATEWAY_RETENTION_INTERVAL": ("retention_interval", _float),
    "GATEWAY_RETENTION_BATCH": ("retention_batch", _int),
    "GATEWAY_RETENTION_PAUSE": ("retention_pause", _float),
    "GATEWAY_ROLLUP_INTERVAL": ("rollup_interval", _float),
    "GATEWAY_REDIS_MAX_CONNECTIONS": ("redis_max_connections", _int),
    "GATEWAY_REDIS_POOL_TIMEOUT": ("redis_pool_timeout", _float),
}


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build Settings from the environment (which wins) over an optional .env file."""
    env: dict[str, str] = {}
    if dotenv is not None:
        env.update(read_dotenv(dotenv))
    env.update(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    for var, (name, parse) in ENV.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        values[name] = parse(var, raw.strip())  # type: ignore[operator]
    settings = Settings(**values)  # type: ignore[arg-type]
    return validate(settings)


def validate(s: Settings) -> Settings:
    if s.queue_partitions < 1 or s.queue_partitions > 1024:
        raise SettingsError("GATEWAY_QUEUE_PARTITIONS must be between 1 and 1024")
    if s.worker_concurrency < 1:
        raise SettingsError("GATEWAY_WORKER_CONCURRENCY must be at least 1")
    if s.worker_batch < 1:
        raise SettingsError("GATEWAY_WORKER_BATCH must be at least 1")
    if bool(s.twilio_account_sid) != bool(s.twilio_auth_token):
        raise SettingsError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together")
    if s.twilio_enabled and not (s.twilio_from_number or s.twilio_whatsapp_from or s.twilio_messaging_service_sid):
        raise SettingsError("Twilio is configured but none of TWILIO_FROM_NUMBER, TWILIO_WHATSAPP_FROM, "
                            "TWILIO_MESSAGING_SERVICE_SID is set: there is no sender")
    if bool(s.whatsapp_access_token) != bool(s.whatsapp_phone_number_id):
        raise SettingsError("WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID must be set together")
    if s.whatsapp_access_token and not s.whatsapp_app_secret:
        raise SettingsError("WHATSAPP_APP_SECRET is required with WHATSAPP_ACCESS_TOKEN "
                            "(webhooks cannot be verified without it)")
    if s.smtp_host and not s.email_from:
        raise SettingsError("GATEWAY_EMAIL_FROM is required when GATEWAY_SMTP_HOST is set")
    if not 0 < s.rights_recheck_seconds <= 60:
        raise SettingsError("GATEWAY_RIGHTS_RECHECK_SECONDS must be more than 0 and at most 60")
    if s.redis_url:
        from gateway.infra.redis_client import cluster_seeds, is_cluster_url

        if is_cluster_url(s.redis_url):
            try:
                cluster_seeds(s.redis_url)
            except ValueError as exc:
                raise SettingsError(f"GATEWAY_REDIS_URL: {exc}") from None
    if min(s.retention_messages_days, s.retention_attachments_days, s.retention_events_days,
           s.retention_audit_days, s.retention_pause) < 0 or s.retention_interval <= 0 or s.retention_batch < 1:
        raise SettingsError("GATEWAY_RETENTION_*_DAYS and GATEWAY_RETENTION_PAUSE must not be negative, "
                            "GATEWAY_RETENTION_INTERVAL must be positive and GATEWAY_RETENTION_BATCH at least 1")
    if s.rollup_interval <= 0:
        raise SettingsError("GATEWAY_ROLLUP_INTERVAL must be positive")
    if s.redis_max_connections < 2:
        raise SettingsError("GATEWAY_REDIS_MAX_CONNECTIONS must be at least 2")
    if s.redis_pool_timeout <= 0 or s.metrics_cache_seconds < 0:
        raise SettingsError("GATEWAY_REDIS_POOL_TIMEOUT must be positive and GATEWAY_METRICS_CACHE_SECONDS "
                            "not negative")
    if not (s.console_session_hours > 0 and s.console_invite_hours > 0):
        raise SettingsError("GATEWAY_CONSOLE_SESSION_HOURS and GATEWAY_CONSOLE_INVITE_HOURS must be positive")
    if min(s.login_max_failures_account, s.login_max_failures_address, s.login_window_seconds) < 1:
        raise SettingsError("GATEWAY_LOGIN_MAX_FAILURES_* and GATEWAY_LOGIN_WINDOW_SECONDS must be at least 1")
    if not 1 <= s.outbox_concurrency <= s.outbox_max_concurrency:
        raise SettingsError("GATEWAY_OUTBOX_CONCURRENCY must be at least 1 and at most GATEWAY_OUTBOX_MAX_CONCURRENCY")
    if s.outbox_orphan_after < 3:
        raise SettingsError("GATEWAY_OUTBOX_ORPHAN_AFTER must be at least 3 seconds (heartbeats come every second)")
    for var, value in (("GATEWAY_TWILIO_TIMEOUT", s.twilio_timeout), ("GATEWAY_WHATSAPP_TIMEOUT", s.whatsapp_timeout),
                       ("GATEWAY_SMTP_TIMEOUT", s.smtp_timeout)):
        if not 0 < value <= 300:
            raise SettingsError(f"{var} must be between 0 and 300 seconds")
    if s.max_body_bytes < 1024:
        raise SettingsError("GATEWAY_MAX_BODY_BYTES must be at least 1024")
    if s.email_max_bytes < s.max_body_bytes:
        raise SettingsError("GATEWAY_EMAIL_MAX_BYTES must be at least GATEWAY_MAX_BODY_BYTES")
    if s.smtp_listen_max_connections < 1:
        raise SettingsError("GATEWAY_SMTP_LISTEN_MAX_CONNECTIONS must be at least 1")
    if s.email_large_bodies < 1:
        raise SettingsError("GATEWAY_EMAIL_LARGE_BODIES must be at least 1")
    if not s.fetch_schemes or not set(s.fetch_schemes) <= {"http", "https"}:
        raise SettingsError("GATEWAY_FETCH_SCHEMES must list http and/or https")
    if s.fetch_max_bytes < 1 or s.fetch_timeout <= 0 or s.fetch_max_redirects < 0:
        raise SettingsError("GATEWAY_FETCH_MAX_BYTES and GATEWAY_FETCH_TIMEOUT must be positive, "
                            "GATEWAY_FETCH_MAX_REDIRECTS at least 0")
    if not s.secret_key:
        # A stable per-installation key under the data dir: sessions and links survive restarts.
        s = replace(s, secret_key=_data_dir_secret(s.data_dir))
    return s


def _data_dir_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        path.write_text(key)
        path.chmod(0o600)
        return key
