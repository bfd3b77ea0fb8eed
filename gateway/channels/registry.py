"""The channels this gateway runs: one line per channel package.

A channel package (gateway/channels/<name>/) owns everything of its channel: parsing and signature
checks, the settings it reads, its sender, its inbound routes and any listener. The HTTP app and the
runtime name no channel: they ask the packages listed here (`Runtime.channels`, CHANNELS unless a
deployment or a test adds its own) for what each one has, found by module name:

  <package>.routes   add_routes(app)                 its inbound HTTP routes (webhooks, status
                                                     callbacks, the chat socket, unsubscribe links)
  <package>.sender   live_senders(rt) -> {Channel: ChannelSender}
                                                     the senders of the channels it carries live
                                                     (the sandbox carries the others);
                     PREPARE = {Channel: prepare}    optional: the outbox's last step before a send
  <package>.intake   async start(rt) -> closer|None  optional: a background listener (inbound SMTP)

Each of these modules is optional; one that exists must import and provide what it names, or the
start stops with gateway.app.plugins.PluginError naming it. Adding a channel is adding its folder
and one line below.
"""
from __future__ import annotations

import importlib.util

from gateway.app.plugins import PluginError

CHANNELS: tuple[str, ...] = (
    "gateway.channels.twilio",     # SMS, MMS and WhatsApp over Twilio
    "gateway.channels.whatsapp",   # WhatsApp over Meta's Cloud API
    "gateway.channels.email",      # email by webhook and SMTP in, SMTP out
    "gateway.channels.webchat",    # the web chat widget, its socket and its sender
    "gateway.channels.api",        # business systems: POST /api/v1/inbound in, signed webhooks out
)


def modules(packages, module: str) -> list:
    """`<package>.<module>` imported, for each package that has that module, in order."""
    found = []
    for package in packages:
        name = f"{package}.{module}"
        try:
            present = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError as exc:
            raise PluginError(f"channel package {package} not found: {exc}") from exc
        if present:
            try:
                found.append(importlib.import_module(name))
            except Exception as exc:
                raise PluginError(f"channel module {name} failed to import: {type(exc).__name__}: {exc}") from exc
    return found


def parts(packages, module: str, attribute: str, *, required: bool = True) -> list:
    """`attribute` of each channel's `module` (see the table above), in registry order."""
    found = []
    for mod in modules(packages, module):
        value = getattr(mod, attribute, None)
        if value is None and required:
            raise PluginError(f"channel module {mod.__name__} has no {attribute}")
        if value is not None:
            found.append(value)
    return found


def add_routes(app, packages) -> None:
    """Every channel's inbound routes on `app`."""
    for add in parts(packages, "routes", "add_routes"):
        add(app)
