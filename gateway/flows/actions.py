"""Named actions a flow can run, and the explicit context through which they reach the outside world.

An action is `async def action(call: ActionCall) -> str | None` (a plain function works too). It
returns None (or "ok") when it succeeded, or a result name ("not_found", "action_failed", ...) that
the flow branches on with `on: [{result: not_found, goto: ...}]`. Exceptions raised by an action
become the result "action_failed"; nothing escapes the engine.

The only I/O a turn does happens here, through `ActionContext` (an aiohttp session, settings such as
the business API base URL, a logger). `escalate` and `end` are part of the engine itself.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote

import aiohttp

from gateway.domain.inputs import clean_text, loads
from gateway.flows.machine import dig
from gateway.flows.nlu import Message, normalize

log = logging.getLogger("gateway.flows")

OK = "ok"
FAILED = "action_failed"
NOT_FOUND = "not_found"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


@dataclass
class ActionContext:
    """What a turn may use for I/O. `settings` keys used by the built-ins: business_api_base,
    http_timeout (seconds, default 5)."""

    session: aiohttp.ClientSession | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    logger: Any = log                     # stdlib or structlog logger; built-ins log plain messages
    conversation_id: Any = None
    # never in `settings`, which templates read: a flow's text must not be able to show it
    business_api_token: str | None = field(default=None, repr=False)


@dataclass
class TurnEffects:
    """What the actions of one turn produced, besides slots (collected by the engine)."""

    replies: list = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    attribute_updates: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)


@dataclass
class ActionCall:
    """One action invocation: its YAML args, the conversation's working slots (mutable), the turn."""

    name: str
    args: Mapping[str, Any]
    slots: dict[str, Any]
    ctx: ActionContext
    flow: Any
    state: str
    text: str
    choice: str | None
    effects: TurnEffects
    message: Message | None = None        # the turn's normalized `text`, prepared for matching

    def prepared_text(self) -> Message:
        """`text` normalized and prepared for matching (the turn's own, when the engine passed it)."""
        if self.message is None:
            self.message = Message(normalize(self.text))
        return self.message

    def render(self, template: str, *, quote_values: bool = False) -> str:
        return render_template(template, self.slots, self.attributes, self.ctx.settings, quote_values=quote_values)

    @property
    def attributes(self) -> Mapping[str, Any]:
        merged = dict(self.ctx.attributes)
        merged.update(self.effects.attribute_updates)
        return merged

    def say(self, text: str, buttons: tuple = ()) -> None:
        from gateway.flows.engine import Reply
        self.effects.replies.append(Reply(self.render(text), tuple(buttons)))


Action = Callable[[ActionCall], "Awaitable[str | None] | str | None"]
Guard = Callable[[Any], bool]


def render_template(template: str, slots: Mapping[str, Any], attributes: Mapping[str, Any] = {},
                    settings: Mapping[str, Any] = {}, *, quote_values: bool = False) -> str:
    """Fill {slot}, {slot.field}, {attributes.name} and {setting} placeholders; unknown ones become ""."""
    def value(m: re.Match) -> str:
        path = m.group(1)
        if path.startswith("attributes."):
            found = dig(attributes, path[len("attributes."):])
        else:
            found = dig(slots, path)
            if found is None and path in settings:
                return str(settings[path]).rstrip("/")
        if found is None:
            return ""
        return quote(str(found), safe="") if quote_values else str(found)
    return _PLACEHOLDER.sub(value, template)


class ActionRegistry:
    """Named actions and guards. `ActionRegistry.default()` holds the built-ins; register your own."""

    def __init__(self):
        self._actions: dict[str, Action] = {}
        self._guards: dict[str, Guard] = {}

    @classmethod
    def default(cls) -> "ActionRegistry":
        registry = cls()
        for name, fn in BUILTIN_ACTIONS.items():
            registry.register(name, fn)
        return registry

    def register(self, name: str, fn: Action) -> None:
        self._actions[name] = fn

    def register_guard(self, name: str, fn: Guard) -> None:
        """A named guard: fn(view) -> bool, where view has .slots, .attributes, .channel, .now."""
        self._guards[name] = fn

    def action(self, name: str) -> Action:
        return self._actions[name]

    def action_names(self) -> set[str]:
        return set(self._actions)

    @property
    def guards(self) -> Mapping[str, Guard]:
        return self._guards


# --- built-in actions ---------------------------------------------------------------------------

def set_slot(call: ActionCall) -> None:
    """set_slot: {name: value, ...} (values are templates when strings)."""
    for key, value in call.args.items():
        call.slots[key] = call.render(value) if isinstance(value, str) else value


def clear_slots(call: ActionCall) -> None:
    """clear_slots: [names] / {value: [names]}; without names, all slots."""
    names = call.args.get("value", call.args.get("names"))
    if names is None:
        call.slots.clear()
        return
    for name in [names] if isinstance(names, str) else names:
        call.slots.pop(name, None)


def set_attribute(call: ActionCall) -> None:
    """set_attribute: {vip: true, last_order: "{order_number}"}: contact attributes the integrator saves."""
    for key, value in call.args.items():
        call.effects.attribute_updates[key] = call.render(value) if isinstance(value, str) else value


def tag(call: ActionCall) -> None:
    """tag: order-status  /  tag: {value: [a, b]}."""
    value = call.args.get("value", call.args.get("tags"))
    for item in [value] if isinstance(value, str) else (value or ()):
        if item not in call.effects.tags:
            call.effects.tags.append(str(item))


def emit_event(call: ActionCall) -> None:
    """emit_event: order_looked_up  /  emit_event: {name: x, data: {order: "{order_number}"}}."""
    name = call.args.get("name", call.args.get("value"))
    data = {k: call.render(v) if isinstance(v, str) else v for k, v in (call.args.get("data") or {}).items()}
    call.effects.events.append((str(name), data))


async def http_request(call: ActionCall) -> str:
    """Call an HTTP API. Args: url (template; {business_api_base} and slots, URL-quoted), method (GET),
    json (body, templates), headers (templates), save_as (slot for the JSON answer), timeout (seconds).
    Calls under GATEWAY_BUSINESS_API_BASE carry GATEWAY_BUSINESS_API_TOKEN as a bearer token.

    Results: ok (2xx), not_found (404), action_failed (other statuses, timeouts, network errors, bad JSON).
    """
    args = call.args
    url = call.render(str(args["url"]), quote_values=True)
    if not url.startswith(("http://", "https://")):
        call.ctx.logger.warning(f"flow http action: no usable URL (is business_api_base set?): {url}")
        return FAILED
    method = str(args.get("method", "GET")).upper()
    body = args.get("json")
    if isinstance(body, Mapping):
        body = {k: call.render(v) if isinstance(v, str) else v for k, v in body.items()}
    timeout = float(args.get("timeout", call.ctx.settings.get("http_timeout", 5)))
    headers = {str(k): call.render(str(v)) for k, v in (args.get("headers") or {}).items()}
    headers.update(_business_auth(call.ctx, url))
    try:
        if call.ctx.session is not None:
            status, data = await _fetch(call.ctx.session, method, url, body, timeout, headers)
        else:
            async with aiohttp.ClientSession() as session:
                status, data = await _fetch(session, method, url, body, timeout, headers)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        call.ctx.logger.warning(f"flow http action {method} {url} failed: {type(exc).__name__}")
        call.slots["last_error"] = type(exc).__name__
        return FAILED
    call.slots["last_status"] = status
    if status == 404:
        return NOT_FOUND
    if not 200 <= status < 300:
        call.ctx.logger.warning(f"flow http action {method} {url} answered {status}")
        return FAILED
    if args.get("save_as"):
        call.slots[str(args["save_as"])] = data
    return OK


def _business_auth(ctx: ActionContext, url: str) -> dict[str, str]:
    """GATEWAY_BUSINESS_API_TOKEN goes to the business API only, never to another host a flow names."""
    base, token = ctx.settings.get("business_api_base"), ctx.business_api_token
    if not (base and token) or not (url == base.rstrip("/") or url.startswith(base.rstrip("/") + "/")):
        return {}
    return {"Authorization": f"Bearer {token}"}


async def _fetch(session: aiohttp.ClientSession, method: str, url: str, body: Any, timeout: float,
                 headers: Mapping[str, str] | None = None):
    async with session.request(method, url, json=body, headers=dict(headers or {}),
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        data = None
        # The answer lands in the conversation's slots (jsonb): decoded by the one strict decoder
        # (InputError is a ValueError: the action fails) with unstorable characters cleaned.
        if 200 <= resp.status < 300 and resp.content_type == "application/json":
            data = loads(await resp.read(), field="answer", strings="clean")
        elif 200 <= resp.status < 300:
            data = {"text": clean_text(await resp.text(errors="replace"))}
        return resp.status, data


async def http_get_order_status(call: ActionCall) -> str:
    """GET {business_api_base}/orders/{order_number}; the JSON answer lands in the slot `order`
    (args: slot (default order_number), save_as (default order), timeout)."""
    slot = call.args.get("slot", "order_number")
    sub = ActionCall(call.name, {"url": "{business_api_base}/orders/{" + slot + "}",
                                 "save_as": call.args.get("save_as", "order"),
                                 **({"timeout": call.args["timeout"]} if "timeout" in call.args else {})},
                     call.slots, call.ctx, call.flow, call.state, call.text, call.choice, call.effects,
                     call.message)
    if not call.slots.get(slot):
        return FAILED
    return await http_request(sub)


def answer_faq(call: ActionCall) -> str | None:
    """Reply with the FAQ answer the customer asked for: the chosen option's id, else the entry whose
    questions and keywords match the message best (threshold arg, default 70). Result no_match if none."""
    entries = call.flow.faq
    entry = next((e for e in entries if e.id == call.choice), None)
    if entry is None:
        message = call.prepared_text()
        best_score = float(call.args.get("threshold", 70))
        for candidate in entries:
            score = candidate.matcher.score(message, best_score)   # only a better score matters
            if score >= best_score and (entry is None or score > best_score):
                entry, best_score = candidate, score
    if entry is None:
        return "no_match"
    call.slots["faq_topic"] = entry.id
    call.say(entry.answer)
    return None


BUILTIN_ACTIONS: dict[str, Action] = {
    "set_slot": set_slot,
    "clear_slots": clear_slots,
    "set_attribute": set_attribute,
    "tag": tag,
    "emit_event": emit_event,
    "http_request": http_request,
    "http_get_order_status": http_get_order_status,
    "answer_faq": answer_faq,
}
