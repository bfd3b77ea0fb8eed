"""Channel choice for an outbound message: pure policy, no I/O.

Replies go out on the channel the customer last wrote from, to the address they used, unless the
caller names a channel or that channel cannot be used now (consent, WhatsApp 24-hour window).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain.identity import channels_for_kind
from gateway.domain.types import Channel, Purpose

WHATSAPP_WINDOW = timedelta(hours=24)
DEFAULT_PREFERENCE = (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL, Channel.WEBCHAT, Channel.API)


@dataclass(frozen=True)
class Policy:
    """What the deployment can do (gateway.channels.modes.routing_policy builds it from the settings):
    which channels have a live provider (the others run in sandbox, and still carry messages: they
    are recorded instead of sent), whether a WhatsApp re-engagement template is configured."""

    whatsapp_template_available: bool = False
    live: frozenset[Channel] = frozenset()
    consent_regimes: tuple = ()    # settings' consent regime overrides (gateway.domain.consent)


@dataclass(frozen=True)
class Reachable:
    channel: Channel
    address: str
    kind: str
    last_inbound_at: datetime | None = None   # on this channel and address


@dataclass(frozen=True)
class Route:
    channel: Channel
    address: str
    kind: str
    needs_template: bool = False


@dataclass(frozen=True)
class RouteOptions:
    routes: dict[Channel, Route]
    unavailable: dict[Channel, str]           # channel -> reason
    last_inbound_channel: Channel | None = None
    live: frozenset[Channel] = frozenset()    # channels with a live provider: preferred over sandbox ones


def reachable_from_identities(identities: list[tuple[str, str]],
                              last_inbound: dict[tuple[str, str], datetime]) -> list[Reachable]:
    """identities: (kind, address); last_inbound: (channel, address) -> time of last inbound."""
    out = []
    for kind, address in identities:
        for channel in channels_for_kind(kind):
            out.append(Reachable(channel, address, kind, last_inbound.get((channel.value, address))))
    return out


def route_options(reachable: list[Reachable], *, now: datetime, purpose: Purpose,
                  blocked: dict[tuple[str, str], str], whatsapp_template_available: bool,
                  has_template: bool = False) -> RouteOptions:
    """Every channel we could use now, and why the others cannot be used.

    `blocked` maps (channel, address) to a consent reason ("opted_out", ...).
    """
    routes: dict[Channel, Route] = {}
    unavailable: dict[Channel, str] = {}
    # most recently used address first, so the customer hears from us where they talk to us
    ordered = sorted(reachable, key=lambda r: r.last_inbound_at or datetime.min.replace(tzinfo=now.tzinfo),
                     reverse=True)
    for r in ordered:
        if r.channel in routes:
            continue
        reason = blocked.get((r.channel.value, r.address))
        if reason:
            unavailable.setdefault(r.channel, reason)
            continue
        needs_template = False
        if r.channel is Channel.WHATSAPP:
            in_window = r.last_inbound_at is not None and now - r.last_inbound_at < WHATSAPP_WINDOW
            if not in_window:
                if has_template or whatsapp_template_available:
                    needs_template = not has_template
                else:
                    unavailable.setdefault(r.channel, "whatsapp_window_closed")
                    continue
        if r.channel is Channel.WEBCHAT and purpose is Purpose.MARKETING:
            unavailable.setdefault(r.channel, "not_for_marketing")
            continue
        routes[r.channel] = Route(r.channel, r.address, r.kind, needs_template)
        unavailable.pop(r.channel, None)
    return RouteOptions(routes, unavailable)


def choose_route(options: RouteOptions, *, explicit: Channel | None, last_inbound_channel: Channel | None,
                 preference: tuple[Channel, ...] = DEFAULT_PREFERENCE) -> Route | None:
    if explicit is not None:
        return options.routes.get(explicit)
    if last_inbound_channel is not None and last_inbound_channel in options.routes:
        return options.routes[last_inbound_channel]  # the customer's channel, by template if need be
    preference = prefer_live(preference, options.live)
    for channel in preference:
        route = options.routes.get(channel)
        if route is not None and not route.needs_template:
            return route
    for channel in preference:  # only template-capable routes left
        if channel in options.routes:
            return options.routes[channel]
    return None


def prefer_live(channels, live: frozenset[Channel]) -> list[Channel]:
    """The same channels, those with a live provider first (a sandbox send reaches nobody)."""
    return sorted(channels, key=lambda c: c not in live)
