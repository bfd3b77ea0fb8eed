"""Message templates for journey sends: per-channel variants, localized, safely rendered.

A template declares its variables, each with a source (`event.cart_url`, `attributes.plan`,
`contact.name`) and optionally a default. Placeholders are plain `{name}` fields: no attribute or
index access, no conversions, no format specs, so a value can never reach into Python objects,
and a value containing braces is inserted as-is. Every placeholder must be a declared variable;
that, and that each variable without a default is guaranteed by the journey's entry, are checked
when the definition is loaded (gateway.journeys.model), so a send never renders a broken message.

YAML shape (one template):

    variables:
      first_name: {from: contact.name, default: there}
      cart_url: {from: event.cart_url}          # no default: the entry must require cart_url
    text: "..."                                   # generic fallback for sms/chat/api
    sms: "Hi {first_name}, your cart: {cart_url}"
    whatsapp: {text: "...", template: cart_reminder, language: en_US, parameters: ["{first_name}"]}
    email: {subject: "...", text: "...", html: "<p>...</p>"}
    chat: {text: "...", buttons: [{id: view_cart, title: View cart}]}
    locales: {es: {sms: "...", whatsapp: {...}, email: {...}}}
"""
from __future__ import annotations

import html as html_lib
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.types import Button, Channel, TemplateRef

SOURCES = ("event.", "attributes.", "contact.")
CONTACT_FIELDS = ("name", "locale", "timezone", "id", "external_id")


class TemplateError(ValueError):
    """A template that cannot render safely; the message names the template and the problem."""


@dataclass(frozen=True)
class Variable:
    name: str
    source: str | None            # "event.cart_url" | "attributes.plan" | "contact.name" | None
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Variant:
    """What one channel gets. For WhatsApp, `text` is the free-form body (inside the 24 h window)
    and `wa_template` the approved template used outside it."""

    text: str | None = None
    subject: str | None = None
    html: str | None = None
    buttons: tuple[Button, ...] = ()
    wa_template: str | None = None
    wa_language: str = "en_US"
    wa_parameters: tuple[str, ...] = ()


# placeholders every template may use without declaring them, filled by the sender
BUILTIN_VARIABLES = ("preferences_url",)   # the contact's preference page (signed, expiring link)


@dataclass(frozen=True)
class Rendered:
    text: str
    subject: str | None = None
    html: str | None = None
    buttons: tuple[Button, ...] = ()
    template: TemplateRef | None = None   # WhatsApp approved template, when the variant has one


@dataclass(frozen=True)
class Template:
    name: str
    variables: Mapping[str, Variable]
    variants: Mapping[str | None, Mapping[str, Variant]] = field(default_factory=dict)  # locale -> key -> variant

    def variant(self, channel: Channel, locale: str | None) -> Variant | None:
        """The best variant for a channel and contact locale (es_MX -> es -> default)."""
        key = _variant_key(channel)
        for loc in _locale_chain(locale):
            by_key = self.variants.get(loc)
            if by_key is None:
                continue
            if key in by_key:
                return by_key[key]
            if key in ("chat", "api") and "chat" in by_key:
                return by_key["chat"]
            if key in ("sms", "chat", "api", "whatsapp") and "text" in by_key:
                return by_key["text"]
        return None

    def supports(self, channel: Channel) -> bool:
        v = self.variant(channel, None)
        if v is None:
            return False
        if channel is Channel.EMAIL:
            return bool(v.subject and (v.text or v.html))
        if channel is Channel.WHATSAPP:
            return bool(v.text or v.wa_template)
        return bool(v.text)

    def render(self, channel: Channel, locale: str | None, context: Mapping[str, Any]) -> Rendered:
        """Render for a channel; `context` has event, attributes, contact (see `values`)."""
        v = self.variant(channel, locale)
        if v is None:
            raise TemplateError(f"template {self.name!r} has no variant for {channel.value}")
        values = self.values(context)
        fill = lambda text: render_text(text, values) if text is not None else None
        template = None
        if channel is Channel.WHATSAPP and v.wa_template:
            template = TemplateRef(v.wa_template, v.wa_language, tuple(fill(p) for p in v.wa_parameters))
        text = fill(v.text)
        if text is None:  # template-only WhatsApp variant: the thread shows its parameters
            text = f"[{v.wa_template}] " + " | ".join(template.parameters if template else ())
        html = render_text(v.html, {k: html_lib.escape(s) for k, s in values.items()}) if v.html else None
        buttons = tuple(Button(b.id, fill(b.title)) for b in v.buttons)
        return Rendered(text=text, subject=fill(v.subject), html=html, buttons=buttons, template=template)

    def values(self, context: Mapping[str, Any]) -> dict[str, str]:
        out = {name: _text(context.get(name) or "") for name in BUILTIN_VARIABLES}
        for var in self.variables.values():
            value = lookup(var.source, context) if var.source else None
            if value is None or value == "":
                if var.default is None:
                    raise TemplateError(f"template {self.name!r}: variable {var.name!r} has no value "
                                        f"({var.source}) and no default")
                value = var.default
            out[var.name] = _text(value)
        return out

    def placeholders(self) -> set[str]:
        found: set[str] = set()
        for by_key in self.variants.values():
            for v in by_key.values():
                for text in (v.text, v.subject, v.html, *v.wa_parameters, *(b.title for b in v.buttons)):
                    if text:
                        found |= fields_of(text, where=self.name)
        return found


def lookup(source: str, context: Mapping[str, Any]) -> Any:
    """Resolve `event.a.b` / `attributes.x` / `contact.name` in a render context."""
    head, _, path = source.partition(".")
    node: Any = context.get(head)
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_FORMATTER = string.Formatter()


def fields_of(text: str, *, where: str = "template") -> set[str]:
    """The placeholder names in `text`; TemplateError on anything but a plain `{name}`."""
    names = set()
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise TemplateError(f"{where}: malformed placeholder in {text!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"{where}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                                f"{':' + spec if spec else ''}}} must be a plain {{name}}")
        names.add(name)
    return names


def render_text(text: str, values: Mapping[str, str]) -> str:
    """Substitute plain `{name}` fields; values are inserted verbatim (never re-parsed)."""
    out = []
    for literal, name, _, _ in _FORMATTER.parse(text):
        out.append(literal)
        if name is not None:
            if name not in values:
                raise TemplateError(f"no value for placeholder {{{name}}}")
            out.append(values[name])
    return "".join(out)


def _variant_key(channel: Channel) -> str:
    return {Channel.WEBCHAT: "chat"}.get(channel, channel.value)


def _locale_chain(locale: str | None) -> list[str | None]:
    chain: list[str | None] = []
    if locale:
        norm = locale.replace("-", "_")
        chain.append(norm)
        lang = norm.split("_")[0]
        if lang != norm:
            chain.append(lang)
    chain.append(None)
    return chain


# -- parsing ---------------------------------------------------------------------------------

CHANNEL_KEYS = ("text", "sms", "whatsapp", "email", "chat", "api")


def parse_template(name: str, data: Any) -> Template:
    if not isinstance(data, dict):
        raise TemplateError(f"template {name!r} must be a mapping")
    unknown = set(data) - {"variables", "locales", *CHANNEL_KEYS}
    if unknown:
        raise TemplateError(f"template {name!r}: unknown keys {sorted(unknown)}")
    variables = {}
    for var_name, spec in (data.get("variables") or {}).items():
        if not str(var_name).isidentifier():
            raise TemplateError(f"template {name!r}: variable name {var_name!r} is not an identifier")
        if not isinstance(spec, dict):
            spec = {"default": spec}
        source = spec.get("from")
        if source is not None and (not isinstance(source, str) or not source.startswith(SOURCES)
                                   or source.endswith(".")):
            raise TemplateError(f"template {name!r}: variable {var_name!r} source must start with "
                                f"event., attributes. or contact., got {source!r}")
        if source and source.startswith("contact.") and source.split(".", 1)[1] not in CONTACT_FIELDS:
            raise TemplateError(f"template {name!r}: contact field must be one of {', '.join(CONTACT_FIELDS)}")
        default = spec.get("default")
        if source is None and default is None:
            raise TemplateError(f"template {name!r}: variable {var_name!r} needs a source (from:) or a default")
        variables[var_name] = Variable(var_name, source, None if default is None else _text(default))
    variants: dict[str | None, dict[str, Variant]] = {None: _parse_variants(name, data)}
    for loc, loc_data in (data.get("locales") or {}).items():
        if not isinstance(loc_data, dict):
            raise TemplateError(f"template {name!r}: locale {loc!r} must be a mapping")
        bad = set(loc_data) - set(CHANNEL_KEYS)
        if bad:
            raise TemplateError(f"template {name!r} locale {loc!r}: unknown keys {sorted(bad)}")
        variants[str(loc).replace("-", "_")] = _parse_variants(f"{name}[{loc}]", loc_data)
    tpl = Template(name, variables, variants)
    undeclared = tpl.placeholders() - set(variables) - set(BUILTIN_VARIABLES)
    if undeclared:
        raise TemplateError(f"template {name!r}: placeholders {sorted(undeclared)} are not declared variables")
    return tpl


def _parse_variants(where: str, data: dict) -> dict[str, Variant]:
    out: dict[str, Variant] = {}
    for key in CHANNEL_KEYS:
        if key not in data:
            continue
        raw = data[key]
        if isinstance(raw, str):
            raw = {"text": raw}
        if not isinstance(raw, dict):
            raise TemplateError(f"{where}.{key} must be a string or a mapping")
        allowed = {"text", "subject", "html", "buttons", "template", "language", "parameters"}
        bad = set(raw) - allowed
        if bad:
            raise TemplateError(f"{where}.{key}: unknown keys {sorted(bad)}")
        buttons = []
        for b in raw.get("buttons") or ():
            if not isinstance(b, dict) or not b.get("id") or not b.get("title"):
                raise TemplateError(f"{where}.{key}.buttons entries need id and title")
            buttons.append(Button(str(b["id"]), str(b["title"])))
        params = raw.get("parameters") or ()
        if not isinstance(params, (list, tuple)):
            raise TemplateError(f"{where}.{key}.parameters must be a list")
        if key == "email" and not raw.get("subject"):
            raise TemplateError(f"{where}.email needs a subject")
        if key == "whatsapp" and not (raw.get("text") or raw.get("template")):
            raise TemplateError(f"{where}.whatsapp needs text (24 h window) and/or template (approved name)")
        if key not in ("whatsapp",) and not (raw.get("text") or raw.get("html")):
            raise TemplateError(f"{where}.{key} needs text")
        out[key] = Variant(text=_opt(raw.get("text")), subject=_opt(raw.get("subject")), html=_opt(raw.get("html")),
                           buttons=tuple(buttons), wa_template=_opt(raw.get("template")),
                           wa_language=str(raw.get("language") or "en_US"),
                           wa_parameters=tuple(str(p) for p in params))
    return out


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
