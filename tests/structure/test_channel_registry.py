"""A channel lives in one folder: the HTTP app and the runtime know channels only through the registry.

gateway/channels/registry.py lists the channel packages; gateway/http/ and gateway/app/ mount their
routes, build their senders and start their listeners by iterating over it. So the code of those two
packages (names, attributes, imports and identifier-like strings; docstrings and prose are left out)
must not name a provider or a channel: no `twilio`, `whatsapp`, `smtp`, `webchat`, `mailgun`,
`sendgrid` or `meta_`, no `Channel.EMAIL`-style member, no import of a channel package, no email or
chat setting (`email_*`, `smtp_*`, `chat_*`), no channel route path. `app/settings.py` is the one
exception: it declares every setting (the names are a documented contract); each is read by its
channel's package.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent
CHANNEL_PACKAGES = sorted(d.name for d in (ROOT / "channels").iterdir() if (d / "__init__.py").exists())
EXEMPT = {"app/settings.py"}

PROVIDER_WORDS = re.compile(r"twilio|whatsapp|smtp|webchat|mailgun|sendgrid|(^|_)meta_", re.I)
CHANNEL_SETTING = re.compile(r"^(email|smtp|chat|twilio|whatsapp|api_channel)_")
CHANNEL_PATH = re.compile(r"^/(webhooks|chat|unsubscribe)\b|^/api/v1/inbound\b")
CHANNEL_IMPORT = re.compile(r"^gateway\.channels\.(%s)(\.|$)" % "|".join(CHANNEL_PACKAGES))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def mentions(source: str) -> list[tuple[int, str]]:
    """(line, what) for every place in `source` that names a channel or a provider."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Channel":
            found.append((node.lineno, f"Channel.{node.attr}"))
            continue
        words: list[str] = []
        if isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
            if CHANNEL_SETTING.match(node.attr):
                found.append((node.lineno, f".{node.attr} (a channel's setting)"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words = [node.name]
        elif isinstance(node, ast.arg):
            words = [node.arg]
        elif isinstance(node, ast.keyword) and node.arg:
            words = [node.arg]
        elif isinstance(node, ast.alias):
            words = [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            words = [node.module or ""]
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names
                      if CHANNEL_IMPORT.match(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and not re.search(r"\s", node.value):     # identifier-like strings, not prose
            words = [node.value]
            if CHANNEL_PATH.match(node.value):
                found.append((node.lineno, f"route {node.value!r}"))
        for word in words:
            if PROVIDER_WORDS.search(word) or CHANNEL_IMPORT.match(word):
                found.append((node.lineno, word))
    return found


def test_http_and_app_name_no_channel():
    offenders = []
    for package in ("http", "app"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in EXEMPT:
                continue
            offenders += [f"gateway/{relative}:{line}: {what}"
                          for line, what in mentions(path.read_text(encoding="utf-8"))]
    assert offenders == [], ("gateway/http and gateway/app reach channels through gateway.channels.registry "
                             "only; move this into the channel's package:\n" + "\n".join(offenders))


def test_the_check_sees_what_it_forbids():
    """The scan is not vacuous: each kind of mention it forbids is found in a sample."""
    sample = '''
"""Docstrings may say Twilio, SMTP or WhatsApp."""
from gateway.channels.email.intake import start
from gateway.channels import twilio
def f(rt):
    rt.settings.smtp_listen_port
    app.router.add_post("/webhooks/twilio/inbound", handler)
    return Channel.EMAIL, meta_sender, "the WhatsApp window (prose is fine)"
'''
    found = {what for _, what in mentions(sample)}
    assert "from gateway.channels.email.intake import start" in found
    assert "from gateway.channels import twilio" in found
    assert ".smtp_listen_port (a channel's setting)" in found
    assert "route '/webhooks/twilio/inbound'" in found
    assert {"Channel.EMAIL", "meta_sender"} <= found
    assert not any("prose" in w or "Docstrings" in w for w in found)


def test_every_channel_package_is_registered():
    """A channel folder that is not in the registry would be dead code (or a forgotten line)."""
    from gateway.channels.registry import CHANNELS

    assert sorted(name.rpartition(".")[2] for name in CHANNELS) == CHANNEL_PACKAGES
