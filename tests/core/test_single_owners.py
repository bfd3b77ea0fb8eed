"""One owner per rule, checked over the source: consent is written only by gateway/domain/consent.py,
address kinds are decided only by gateway/domain/identity.py, keys are derived from the secret key only by
gateway/domain/secret_keys.py (conversations, episodes, identities and timers: test_owners.py)."""
from __future__ import annotations

import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _offenders(pattern: str, owner: str) -> list[str]:
    regex = re.compile(pattern, re.IGNORECASE)
    found = []
    for path in sorted(GATEWAY.rglob("*.py")):
        rel = path.relative_to(GATEWAY.parent).as_posix()
        if rel == owner:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if regex.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_consent_is_written_only_by_the_consent_module():
    writes = r"(insert\s+into|update|delete\s+from)\s+(consents|consent_history|suppressions)\b"
    assert _offenders(writes, "gateway/domain/consent.py") == []
    assert len(_offenders(writes, "gateway/none.py")) >= 3   # the pattern does find the owner's writes


def test_address_kinds_are_decided_only_in_identity():
    inference = (r"""["'](phone|whatsapp_id|email|chat|api)["']\s+if\b"""           # "phone" if ... else
                 r"""|\belse\s+["'](phone|whatsapp_id)["']"""                       # ... else "whatsapp_id"
                 r"""|get\(\s*["']kind["']\s*,\s*["']phone["']\)"""                 # .get("kind", "phone")
                 r"""|coalesce\([^)]*kind[^)]*,\s*'phone'\)""")                     # SQL default kind
    assert _offenders(inference, "gateway/domain/identity.py") == []


def test_keys_are_derived_from_the_secret_key_only_in_secret_keys():
    derivation = r"hmac\.new\(\s*[\w.]*secret_key\.encode\(\)"
    offenders = [o for o in _offenders(derivation, "gateway/domain/secret_keys.py")
                 # MACs over a message (not keys): the CSRF token and the unsubscribe link
                 if "csrf:" not in o and "unsubscribe:" not in o]
    assert offenders == []


def test_the_outbox_and_the_runtime_read_no_provider_settings():
    """Channels own their settings (gateway/channels/): the outbox, the runtime and the attachment
    route only see senders, and never pick a provider by its class name."""
    provider_setting = r"\.(twilio|whatsapp|smtp|api_channel)_[a-z_]+\b|\.email_from\b|__name__\s*=="
    places = [p for p in _offenders(provider_setting, "gateway/channels")
              if p.startswith(("gateway/pipeline/outbox/", "gateway/app/runtime.py", "gateway/http/attachments.py"))
              and "whatsapp_template_available" not in p]
    assert places == []

