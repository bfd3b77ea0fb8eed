"""Send-time guard math: time zones, quiet hours, local days, frequency caps, busy contacts.

Pure functions on aware datetimes (UTC in, UTC out) with `zoneinfo`; DST-safe: wall-clock times
that do not exist (spring forward) resolve to the first instant after the gap, ambiguous ones
(fall back) to their first occurrence.
"""
from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from gateway.domain.conversation import Mode, Status

UNKNOWN_ZONES = {"Etc/Unknown", ""}


def zone(name: str | None) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None when it is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed, a directory, too long
        return None


def zone_for_phone(phone: str | None) -> ZoneInfo | None:
    """The time zone a phone number's country/area suggests.

    When the number spans several zones (a Spanish mobile: Madrid or the Canaries) the country's
    principal zone wins: the one tzdata's zone.tab lists first for the country.
    """
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    names = [n for n in phone_timezone.time_zones_for_number(number) if n not in UNKNOWN_ZONES]
    if not names:
        return None
    order = _country_zones().get(phonenumbers.region_code_for_number(number) or "", [])
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return zone(names[0])


@functools.lru_cache(maxsize=1)
def _country_zones() -> dict[str, list[str]]:
    """Country code -> zones in zone.tab order (principal zone first); empty if tzdata lacks it."""
    try:
        text = importlib.resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return {}
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out.setdefault(parts[0], []).append(parts[2])
    return out


def contact_zone(profile_tz: str | None, phone: str | None, default: str = "UTC") -> ZoneInfo:
    """The contact's time zone: profile, else inferred from the phone number, else the default."""
    return zone(profile_tz) or zone_for_phone(phone) or zone(default) or ZoneInfo("UTC")


def first_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The earliest UTC instant at which the local clock in `tz` shows `wall` on `day`, or later.

    For a wall time inside a DST gap that is the end of the gap (the transition instant).
    """
    naive = datetime.combine(day, wall)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early  # exists (fold=0 is the first occurrence when ambiguous)
    # In a gap: fold=1 maps with the later offset (an instant before the jump), fold=0 with the
    # earlier one (an instant after it). Bisect to the transition, to the second.
    lo = int(naive.replace(tzinfo=tz, fold=1).astimezone(timezone.utc).timestamp())
    hi = int(early.timestamp())
    lo, hi = min(lo, hi), max(lo, hi)
    before = _offset(lo, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, tz) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, timezone.utc)


def _offset(ts: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).utcoffset()


@dataclass(frozen=True)
class QuietHours:
    """Local times between which nothing is sent; the window may wrap midnight (21:00-08:00)."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


def next_allowed(now: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """`now` when sending is allowed now, else the first minute after the quiet window."""
    if quiet is None:
        return now
    local = now.astimezone(tz)
    if not quiet.contains(local.time()):
        return now
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # evening part of a window that wraps midnight
    return first_instant(day, quiet.end, tz)


def next_time_of_day(now: datetime, tz: ZoneInfo, wall: time) -> datetime:
    """The next instant (after now) at which the local clock shows `wall`."""
    local = now.astimezone(tz)
    candidate = first_instant(local.date(), wall, tz)
    if candidate <= now:
        candidate = first_instant(local.date() + timedelta(days=1), wall, tz)
    return candidate


def local_day_bounds(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the contact's local calendar day containing `now` (23-25 h long)."""
    day = now.astimezone(tz).date()
    return first_instant(day, time(0), tz), first_instant(day + timedelta(days=1), time(0), tz)


def frequency_verdict(sent_today: int, cap: int | None, priority: int,
                      competing_priorities: list[int]) -> str | None:
    """'frequency_cap' when this send must yield, else None.

    `competing_priorities` are the priorities of the contact's other journeys that want to send
    later the same local day. The last slot of the day goes to the highest-priority journey: a
    journey yields it when another one of strictly higher priority is still due that day.
    """
    if cap is None:
        return None
    if sent_today >= cap:
        return "frequency_cap"
    if sent_today == cap - 1 and any(p > priority for p in competing_priorities):
        return "frequency_cap"
    return None


def busy_reason(conversation, now: datetime, *, idle_states: frozenset[str],
                flow_window: timedelta) -> str | None:
    """'agent_conversation' / 'in_flow' when a nudge would interrupt the contact, else None.

    `conversation` needs mode, status, flow_state, last_inbound_at (a row or mapping).
    Mid-flow means: in bot mode, a flow state that is not idle, and the customer wrote within
    `flow_window` (an abandoned flow does not block nudges forever).
    """
    if conversation is None:
        return None
    if conversation["mode"] == Mode.AGENT and conversation["status"] != Status.RESOLVED:
        return "agent_conversation"
    state = conversation["flow_state"]
    last = conversation["last_inbound_at"]
    if (conversation["mode"] == Mode.BOT and state and state not in idle_states
            and last is not None and now - last < flow_window):
        return "in_flow"
    return None
