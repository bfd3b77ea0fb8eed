"""Is an inbound email's From address authenticated? SPF/DKIM/DMARC verdicts, read where they are trusted.

The verdict comes from whoever received the mail from the internet:
- SendGrid: its `SPF` and `dkim` form fields (`dkim` looks like `{@example.com : pass}`);
- Mailgun: the `X-Mailgun-Spf` and `X-Mailgun-Dkim-Check-Result` headers it adds (every copy must
  say Pass, so a copy the sender wrote into the mail cannot outvote Mailgun's);
- any path (SMTP above all): the topmost `Authentication-Results` header whose authserv-id is in
  GATEWAY_EMAIL_TRUSTED_AUTHSERV_IDS (the relay in front of us must strip forged ones, RFC 8601 §5).
Verified means: DMARC pass, or a DKIM pass for a domain aligned with the From domain, or an SPF
pass for an envelope sender aligned with it (relaxed alignment: one domain equals or is a subdomain
of the other). A DMARC fail from a trusted relay is never verified. Anything else is unverified.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.types import Inbound

_PAIR = re.compile(r"([A-Za-z][\w.-]*)\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_COMMENT = re.compile(r"\([^()]*\)")
_SENDGRID_DKIM = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*(\w+)")


@dataclass(frozen=True)
class SenderAuth:
    verified: bool
    method: str | None = None            # dmarc | dkim | spf: what verified it
    source: str | None = None            # sendgrid | mailgun | authentication-results
    results: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "method": self.method, "source": self.source, "results": self.results}


def domain_of(address: str | None) -> str:
    return (address or "").rpartition("@")[2].strip().strip(">").lower().rstrip(".")


def aligned(a: str, b: str) -> bool:
    """Relaxed alignment: equal, or one a subdomain of the other."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def _headers(inbound: Inbound) -> list[tuple[str, str]]:
    pairs = (inbound.raw or {}).get("headers") or []
    return [(str(p[0]), str(p[1])) for p in pairs if isinstance(p, (list, tuple)) and len(p) >= 2]


def _values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def parse_authentication_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {property: value})]) of one Authentication-Results value."""
    value = _COMMENT.sub(" ", value)
    authserv, _, rest = value.partition(";")
    results = []
    for resinfo in rest.split(";"):
        pairs = _PAIR.findall(resinfo)
        if pairs:
            method, result = pairs[0]
            results.append((method.lower(), result.strip('"').lower(),
                            {k.lower(): v.strip('"') for k, v in pairs[1:]}))
    return authserv.strip().split()[0].lower() if authserv.strip() else "", results


def _from_authentication_results(headers, trusted: Iterable[str], from_domain: str) -> SenderAuth | None:
    trusted = {t.lower() for t in trusted}
    for value in _values(headers, "Authentication-Results"):   # topmost first
        authserv, results = parse_authentication_results(value)
        if authserv not in trusted:
            continue
        summary = {m: r for m, r, _ in results}
        if summary.get("dmarc") == "pass":
            return SenderAuth(True, "dmarc", "authentication-results", summary)
        if summary.get("dmarc") == "fail":
            return SenderAuth(False, None, "authentication-results", summary)
        for method, result, props in results:
            if method == "dkim" and result == "pass" and aligned(props.get("header.d", "")
                                                                 or domain_of(props.get("header.i")), from_domain):
                return SenderAuth(True, "dkim", "authentication-results", summary)
            if method == "spf" and result == "pass" and aligned(
                    domain_of(props.get("smtp.mailfrom")) or props.get("smtp.helo", ""), from_domain):
                return SenderAuth(True, "spf", "authentication-results", summary)
        return SenderAuth(False, None, "authentication-results", summary)
    return None


def _from_sendgrid(extra: dict, from_domain: str, envelope_from: str) -> SenderAuth | None:
    fields = extra.get("sendgrid") or {}
    if "SPF" not in fields and "dkim" not in fields:
        return None
    spf = str(fields.get("SPF") or "").strip().lower()
    dkim = [(d.lower(), r.lower()) for d, r in _SENDGRID_DKIM.findall(str(fields.get("dkim") or ""))]
    results = {"spf": spf or None, "dkim": {d: r for d, r in dkim}}
    if any(r == "pass" and aligned(d, from_domain) for d, r in dkim):
        return SenderAuth(True, "dkim", "sendgrid", results)
    if spf == "pass" and aligned(domain_of(envelope_from), from_domain):
        return SenderAuth(True, "spf", "sendgrid", results)
    return SenderAuth(False, None, "sendgrid", results)


def _from_mailgun(headers, from_domain: str, envelope_from: str) -> SenderAuth | None:
    spf = [v.strip().lower() for v in _values(headers, "X-Mailgun-Spf")]
    dkim = [v.strip().lower() for v in _values(headers, "X-Mailgun-Dkim-Check-Result")]
    if not spf and not dkim:
        return None
    results = {"spf": spf[0] if spf else None, "dkim": dkim[0] if dkim else None}
    signers = [m.group(1).lower() for v in _values(headers, "DKIM-Signature")
               for m in [re.search(r"(?:^|;)\s*d\s*=\s*([^\s;]+)", v)] if m]
    if dkim and all(v == "pass" for v in dkim) and signers and all(aligned(d, from_domain) for d in signers):
        return SenderAuth(True, "dkim", "mailgun", results)
    if spf and all(v == "pass" for v in spf) and aligned(domain_of(envelope_from), from_domain):
        return SenderAuth(True, "spf", "mailgun", results)
    return SenderAuth(False, None, "mailgun", results)


def check_sender(inbound: Inbound, trusted_authserv_ids: Iterable[str] = ()) -> SenderAuth:
    """The verdict on `inbound.sender` (the From address) from what its receiver reported."""
    extra = dict(inbound.extra or {})
    headers = _headers(inbound)
    from_domain = domain_of(inbound.sender)
    envelope_from = str((extra.get("envelope") or {}).get("from") or "")
    verdicts = [v for v in (
        _from_authentication_results(headers, trusted_authserv_ids, from_domain),
        _from_sendgrid(extra, from_domain, envelope_from) if inbound.provider == "sendgrid" else None,
        _from_mailgun(headers, from_domain, envelope_from) if inbound.provider == "mailgun" else None,
    ) if v is not None]
    if any(v.source == "authentication-results" and v.results.get("dmarc") == "fail" for v in verdicts):
        return next(v for v in verdicts if v.source == "authentication-results")
    return next((v for v in verdicts if v.verified), verdicts[0] if verdicts else SenderAuth(False))
