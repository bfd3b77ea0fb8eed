"""Fuzzing every route (issue 11, item 2): any input is a 4xx, never a 5xx, and a refused request
stores nothing.

Routes are found by walking the app's router, so a route added later is fuzzed too: webhooks get
mutated provider fixtures, *correctly signed* (the mutation reaches the parser, not the signature
check); every other route gets mutated JSON bodies (built from its OpenAPI request schema when it
has one), junk path ids and junk query values. Seeded and bounded: the same requests on every run,
about 2,000 of them (10-25 s).
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from gateway.channels.email.secrets import email_webhook_key
from gateway.channels.twilio.adapter import SIGNATURE_HEADER, compute_signature
from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.channels.whatsapp.adapter import signature_header
from gateway.channels.whatsapp.secrets import whatsapp_app_secret
from gateway.devtools.simulate_providers import simulated_mailgun_form
from gateway.devtools.testing import running_gateway
from gateway.http.app import create_app
from gateway.http.openapi import describe

FIXTURES = Path(__file__).resolve().parent.parent / "channels"
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))   # fixed in CI; another value explores further
PER_WEBHOOK, PER_ROUTE = 120, 20
DEEP = "[" * 3000 + "]" * 3000

# values that broke something once, or that a careless client sends
TEXTS = ["x\u0000y", "\u0000", "\ud800", "a\udfffb", "A" * 3000, "", " ", "١٢٣", "١", "nan", "NaN", "inf",
         "-Infinity", "1e30", "99999999999999999999999", "-1", "0", "1.9", "whatsapp:", "whatsapp:+", "+",
         "<script>", "%00", "null", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
         "2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "-0", "0x10", "1_000", " 7 "]
VALUES = [*TEXTS, None, True, False, 0, -1, 1.9, 1e30, 2**64, -(2**64), 10**30, float("nan"), float("inf"),
          [], {}, [1, "a"], {"a": {"b": {"c": "\u0000"}}}, ["14155550123"], {"wa_id": ["1"]}]


def _deep_value(depth: int):
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def _dumps(value) -> str:
    # allow_nan: NaN/Infinity literals are part of what is sent on purpose
    return json.dumps(value, allow_nan=True)


def _mutate_tree(rng: random.Random, tree):
    """A copy of `tree` with one node replaced (or a key added) by a hostile value."""
    tree = json.loads(json.dumps(tree))
    nodes = [(None, None, tree)]
    stack = [tree]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            nodes.append((node, key, child))
            stack.append(child)
    parent, key, _ = rng.choice(nodes)
    value = rng.choice(VALUES + [_deep_value(rng.choice((40, 900)))])
    if parent is None:
        if isinstance(tree, dict):
            tree[rng.choice(["contact_id", "text", "extra"])] = value
        return tree
    parent[key] = value
    return tree


def _body_variants(rng: random.Random, base) -> tuple[bytes, str]:
    """A hostile request body and its content type."""
    roll = rng.random()
    if roll < 0.08:
        return DEEP.encode(), "application/json"
    if roll < 0.12:
        return rng.choice([b"{", b"[]", b"\"x\"", b"\xff\xfe", b"NaN", b"{\"a\":1e400}", b""]), "application/json"
    if roll < 0.22:   # a form (the console's sign-in and forms), hostile values in plausible keys
        keys = list(base) if isinstance(base, dict) and base else ["email", "password", "name", "csrf"]
        form = {k: rng.choice(TEXTS) for k in keys}
        return urlencode(form, errors="surrogatepass").encode(), "application/x-www-form-urlencoded"
    return _dumps(_mutate_tree(rng, base)).encode("utf-8", "surrogatepass"), "application/json"


def _sample(schema: dict | None, depth: int = 0):
    """A plausible value for a JSON schema (only what our OpenAPI documents use)."""
    if not isinstance(schema, dict) or depth > 4:
        return "x"
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return _sample(schema[key][0], depth + 1)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {k: _sample(v, depth + 1) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items"), depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return "x"


async def _stored(pool) -> tuple:
    """What a refused request must not have changed."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM contacts) AS c,
                  (SELECT count(*) FROM identities) AS i, (SELECT count(*) FROM events) AS e,
                  (SELECT count(*) FROM blobs) AS b, (SELECT count(*) FROM outbox) AS o,
                  (SELECT count(*) FROM consents) AS k""")
    return tuple(row)


class Fuzzer:
    def __init__(self, rt, base: str, http: aiohttp.ClientSession, pool):
        self.rt, self.base, self.http, self.pool = rt, base, http, pool
        self.problems: list[str] = []
        self.sent = 0

    async def send(self, method: str, path: str, *, data: bytes | None = None, headers: dict | None = None,
                   what: str = "") -> int:
        before = await _stored(self.pool)
        async with self.http.request(method, self.base + path, data=data, headers=headers or {},
                                     allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
            status = resp.status
        self.sent += 1
        if status >= 500:
            self.problems.append(f"{status} {method} {path} {what[:300]!r}: {text[:300]}")
        elif status >= 400 and await _stored(self.pool) != before:
            self.problems.append(f"{status} but something was stored: {method} {path} {what[:300]!r}")
        return status


# -- webhooks -----------------------------------------------------------------------------------

def _twilio_fixtures(kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((FIXTURES / "twilio" / "fixtures").glob(f"{kind}__*.json"))]


def _mutate_form(rng: random.Random, params: dict) -> dict:
    params = dict(params)
    for _ in range(rng.choice((1, 1, 2))):
        key = rng.choice([*params, "Latitude", "Longitude", "NumMedia", "MediaUrl0", "From", "MessageSid"])
        value = rng.choice([t for t in TEXTS if "\ud800" not in t and "\udfff" not in t])
        params[key] = value
    return {k: v for k, v in params.items() if v is not None}


async def _fuzz_twilio(f: Fuzzer, rng: random.Random, path: str, fixtures: list[dict]) -> None:
    token = twilio_webhook_token(f.rt.settings)
    for n in range(PER_WEBHOOK):
        params = _mutate_form(rng, rng.choice(fixtures))
        if rng.random() < 0.5:   # a fresh id, so a good message is a new one, not a duplicate
            params.setdefault("MessageSid", "")
            if params["MessageSid"].startswith("SM"):
                params["MessageSid"] = f"SMfuzz{n}{rng.randrange(10**9)}"
        pairs = [(k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
        signature = compute_signature(f.base + path, pairs, token)
        await f.send("POST", path, data=urlencode(pairs).encode(), what=str(params),
                     headers={SIGNATURE_HEADER: signature, "Content-Type": "application/x-www-form-urlencoded"})


async def _fuzz_whatsapp(f: Fuzzer, rng: random.Random, path: str) -> None:
    secret = whatsapp_app_secret(f.rt.settings)
    fixtures = [json.loads(p.read_text()) for p in sorted((FIXTURES / "whatsapp" / "fixtures").glob("*.json"))]
    for _ in range(PER_WEBHOOK):
        raw, ctype = _body_variants(rng, rng.choice(fixtures))
        await f.send("POST", path, data=raw, what=raw[:300].decode("utf-8", "replace"),
                     headers={"Content-Type": ctype, "X-Hub-Signature-256": signature_header(raw, secret)})
    for challenge in ("\u0000", "<b>x</b>", "A" * 5000):
        await f.send("GET", f"{path}?hub.mode=subscribe&hub.challenge={challenge}&hub.verify_token=x")


async def _fuzz_email(f: Fuzzer, rng: random.Random, path: str) -> None:
    key = email_webhook_key(f.rt.settings)
    for n in range(PER_WEBHOOK):
        form = simulated_mailgun_form(f.rt.settings, sender=f"fuzz{n}@example.org", recipient="support@example.com",
                                      subject="Fuzz", text="hello")
        mutable = [k for k in form if k not in ("timestamp", "token", "signature")]
        if n % 2:   # SendGrid's field names, authenticated by the key in the URL
            form = {"from": form["from"], "to": "support@example.com", "subject": "Fuzz", "text": "hello",
                    "headers": f"Message-ID: <fuzz-{n}@example.org>\n",
                    "envelope": json.dumps({"to": ["support@example.com"], "from": form["from"]})}
            mutable = list(form)
        for _ in range(rng.choice((1, 2))):
            form[rng.choice(mutable)] = rng.choice(TEXTS + ["[" * 2000 + "]" * 2000, '{"a": NaN}'])
        body = urlencode(form, errors="surrogatepass").encode()
        query = "" if n % 2 == 0 else f"?key={key}"
        await f.send("POST", path + query, data=body, what=str(form),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})


# -- every other route --------------------------------------------------------------------------

PATH_PARAM = re.compile(r"\{[^}]+\}")
JUNK_IDS = ["1", "2", "0", "-1", "١", "٣", "99999999999999999999", "9223372036854775808", "1e3", "abc", "%00"]


async def _fuzz_route(f: Fuzzer, rng: random.Random, method: str, path: str, handler) -> None:
    op = describe(handler)
    base = _sample(op.request) if op is not None and op.request is not None else {}
    query_names = [p.name for p in op.query] if op is not None else []
    for _ in range(PER_ROUTE):
        concrete = PATH_PARAM.sub(lambda m: rng.choice(JUNK_IDS[:3]) if rng.random() < 0.6 else rng.choice(JUNK_IDS),
                                   path)
        if rng.random() < 0.6:   # documented query parameters first, then the usual names
            names = query_names or ["limit", "cursor", "q", "since", "until", "status", "contact_id", "before"]
            concrete += "?" + urlencode({rng.choice(names): rng.choice(TEXTS) for _ in range(rng.choice((1, 2)))},
                                        errors="surrogatepass")
        headers = {"Authorization": f"Bearer {f.rt.settings.admin_token}"}
        data = None
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            data, headers["Content-Type"] = _body_variants(rng, base)
        await f.send(method, concrete, data=data, headers=headers, what=(data or b"")[:300].decode("utf-8", "replace"))


@pytest.mark.slow   # about 2,000 fuzzed requests
async def test_fuzzed_requests_to_every_route_are_never_a_server_error(settings, pool, clean, redis_client):
    started = time.monotonic()
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        async with aiohttp.ClientSession() as http:
            f = Fuzzer(rt, base, http, pool)
            headers = {"Authorization": f"Bearer {rt.settings.admin_token}", "Content-Type": "application/json"}
            for i in range(3):   # a few real contacts and threads, so ids 1..3 reach deep code paths
                async with http.post(f"{base}/api/v1/inbound", headers=headers, data=json.dumps(
                        {"client_message_id": f"seed-{i}", "contact": {"external_id": f"seed-{i}"},
                         "text": "hello"})) as resp:
                    assert resp.status == 201, await resp.text()
            routes = sorted({(r.method, r.resource.canonical): r.handler for r in create_app(rt).router.routes()
                             if r.method not in ("HEAD", "*") and r.resource is not None}.items())
            fuzzed = set()
            for (method, path), handler in routes:
                if path in ("/chat/ws", "/api/v1/stream"):
                    continue   # sockets: frames are fuzzed in test_input_errors.py
                rng = random.Random(f"{SEED}:{method}:{path}")   # a new route leaves the others' cases as they were
                if path == "/webhooks/twilio/inbound":
                    await _fuzz_twilio(f, rng, path, _twilio_fixtures("message"))
                elif path == "/webhooks/twilio/status":
                    await _fuzz_twilio(f, rng, path, _twilio_fixtures("status"))
                elif path == "/webhooks/whatsapp" and method == "POST":
                    await _fuzz_whatsapp(f, rng, path)
                elif path == "/webhooks/email/inbound":
                    await _fuzz_email(f, rng, path)
                else:
                    await _fuzz_route(f, rng, method, path, handler)
                fuzzed.add((method, path))
    elapsed = time.monotonic() - started
    assert {("POST", "/webhooks/twilio/inbound"), ("POST", "/webhooks/whatsapp"), ("POST", "/webhooks/email/inbound"),
            ("POST", "/api/v1/inbound"), ("POST", "/chat/session"), ("PATCH", "/api/v1/contacts/{id}")} <= fuzzed
    assert len(fuzzed) > 40 and f.sent > 1000
    assert f.problems == [], f"{len(f.problems)} of {f.sent} requests failed:\n" + "\n".join(f.problems[:40])
    print(f"fuzzed {len(fuzzed)} routes with {f.sent} requests in {elapsed:.1f}s")
