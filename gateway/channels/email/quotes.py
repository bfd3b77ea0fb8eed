"""Quote and signature stripping: keep only the newest reply of a plain-text email.

The same heuristics as email-reply-parser and talon, kept to markers mail clients really write:
attribution lines ("On <date>, <name> wrote:" and common translations, also wrapped over two
lines), ">"-quoted blocks, "-----Original Message-----", Outlook "From:/Sent:" header blocks, the
"-- " signature separator and "Sent from my iPhone"-style footers.
"""
from __future__ import annotations

import re

_ATTRIBUTIONS = [re.compile(p, re.IGNORECASE) for p in (
    r"^on\b.{4,300}\bwrote\s*:$",                      # English (Gmail, Apple Mail, Thunderbird)
    r"^le\b.{4,300}\ba\s+[ée]crit\s*:$",               # French
    r"^am\b.{4,300}\bschrieb\b.{0,300}:$",             # German
    r"^el\b.{4,300}\bescribi[óo]\s*:$",                # Spanish
    r"^il\b.{4,300}\bha\s+scritto\s*:$",               # Italian
    r"^em\b.{4,300}\bescreveu\s*:$",                   # Portuguese
    r"^op\b.{4,300}\bschreef\b.{0,300}:$",             # Dutch
    r"^.{0,200}<[^<>\s]+@[^<>\s]+>\s+(wrote|a [ée]crit|schrieb|escribi[óo])\s*:$",
)]
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|mensagem original|oorspronkelijk bericht)\s*-{2,}$", re.IGNORECASE)
_HEADER_FROM = re.compile(r"^\*?(from|de|von|van|da)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_SENT = re.compile(
    r"^\*?(sent|date|envoyé|gesendet|enviado|fecha|datum|inviato|verzonden|data)\s*:", re.IGNORECASE)
_SEPARATOR_LINE = re.compile(r"^(_{10,}|-{10,})$")
_FOOTER = re.compile(
    r"^(sent from my\b.*|sent from (outlook|mail|yahoo mail|gmail|samsung)\b.*|"
    r"get outlook for (ios|android)\b.*|envoyé de mon\b.*|von meinem\b.*\bgesendet|"
    r"enviado desde mi\b.*|inviato da(l mio)?\b.*)$", re.IGNORECASE)


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _looks_like_attribution(line: str) -> bool:
    # A date or an address must appear, so "On Monday my colleague wrote:" is not an attribution.
    return (len(line) < 400 and any(ch.isdigit() or ch == "@" for ch in line)
            and any(p.match(line) for p in _ATTRIBUTIONS))


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines (0, 1 or 2) starting at i form an attribution."""
    line = lines[i].strip()
    if not line or _is_quoted(line):
        return 0
    if _looks_like_attribution(line):
        return 1
    if i + 1 < len(lines) and _looks_like_attribution(f"{line} {lines[i + 1].strip()}"):
        return 2
    return 0


def _is_outlook_header(lines: list[str], i: int) -> bool:
    if not _HEADER_FROM.match(lines[i].strip()):
        return False
    return any(_HEADER_SENT.match(line.strip()) for line in lines[i + 1:i + 5])


def _cut_index(lines: list[str]) -> int:
    """Index of the first line that starts quoted history, a signature or a footer."""
    seen_text = False
    for i, raw in enumerate(lines):
        line = raw.strip()
        if (_attribution_span(lines, i) or _ORIGINAL_MESSAGE.match(line)
                or raw.rstrip() == "--" or (line and len(line) < 80 and _FOOTER.match(line))
                or (_is_quoted(line) and seen_text)):
            return i
        if _is_outlook_header(lines, i):
            return i - 1 if i and _SEPARATOR_LINE.match(lines[i - 1].strip()) else i
        seen_text = seen_text or bool(line)
    return len(lines)


def _joined(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines if not _is_quoted(line)).strip()


def strip_quotes(text: str) -> str:
    """The newest reply only; the original (trimmed) if nothing but quotes would remain."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    if not (_is_quoted(lines[first]) or _attribution_span(lines, first)):
        reply = _joined(lines[:_cut_index(lines)])   # top-posted: everything above the history
        if reply:
            return reply
    # Bottom-posted or inline answers: drop quoted lines and attributions, keep what is left.
    kept: list[str] = []
    i = 0
    while i < len(lines):
        span = _attribution_span(lines, i)
        if span:
            i += span
            continue
        if not _is_quoted(lines[i]):
            kept.append(lines[i])
        i += 1
    reply = _joined(kept[:_cut_index(kept)])
    return reply or (text or "").strip()
