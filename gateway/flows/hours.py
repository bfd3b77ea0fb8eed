"""Business hours: is the team in now, and when is it back (in the business time zone, DST-safe).

Opening times are wall-clock times in the business zone. All arithmetic happens on local dates and
wall times, converted to instants with zoneinfo; comparing aware datetimes compares instants, so a
DST switch moves the UTC instant of "Monday 09:00" without moving the wall time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class HoursError(ValueError):
    pass


@dataclass(frozen=True)
class BusinessHours:
    timezone: str
    weekly: tuple[tuple[tuple[time, time], ...], ...]   # index 0 = Monday; each a tuple of (open, close)
    closed_dates: frozenset[date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def parse(cls, spec: Mapping) -> "BusinessHours":
        """From YAML: {timezone: Europe/Berlin, monday: "09:00-12:00, 13:00-18:00", sunday: closed,
        closed_dates: [2024-12-25]}. A weekday left out is closed."""
        if not isinstance(spec, Mapping):
            raise HoursError("business_hours must be a mapping")
        tz = spec.get("timezone")
        if not isinstance(tz, str):
            raise HoursError("business_hours needs a timezone (IANA name such as Europe/Berlin)")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise HoursError(f"unknown time zone {tz!r}") from None
        unknown = set(spec) - set(WEEKDAYS) - {"timezone", "closed_dates"}
        if unknown:
            raise HoursError(f"unknown business_hours keys: {', '.join(sorted(map(str, unknown)))}")
        weekly = []
        for day in WEEKDAYS:
            weekly.append(_parse_ranges(day, spec.get(day, "closed")))
        closed = set()
        for d in spec.get("closed_dates") or ():
            try:
                closed.add(d if isinstance(d, date) else date.fromisoformat(str(d)))
            except ValueError:
                raise HoursError(f"bad closed date {d!r} (use YYYY-MM-DD)") from None
        return cls(tz, tuple(weekly), frozenset(closed))

    def _ranges(self, day: date) -> tuple[tuple[time, time], ...]:
        return () if day in self.closed_dates else self.weekly[day.weekday()]

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        wall = local.time().replace(tzinfo=None)
        return any(start <= wall < end for start, end in self._ranges(local.date()))

    def next_open(self, now: datetime) -> datetime | None:
        """The next opening instant after `now` (now itself if open), in the business zone; None if never."""
        if self.is_open(now):
            return now.astimezone(self.zone)
        zone = self.zone
        local = now.astimezone(zone)
        for offset in range(0, 370):
            day = local.date() + timedelta(days=offset)
            for start, _end in self._ranges(day):
                candidate = _instant(day, start, zone)
                if candidate > now:
                    return candidate
        return None

    def describe_next_open(self, now: datetime) -> dict[str, str]:
        """Template values for the out-of-hours message: when ("Monday at 09:00", "tomorrow at
        09:00", "today at 14:00"), day, time, date, timezone."""
        nxt = self.next_open(now)
        if nxt is None:
            return {"when": "soon", "day": "", "time": "", "date": "", "timezone": self.timezone}
        today = now.astimezone(self.zone).date()
        if nxt.date() == today:
            day = "today"
        elif nxt.date() == today + timedelta(days=1):
            day = "tomorrow"
        else:
            day = WEEKDAYS[nxt.weekday()].capitalize()
        clock = nxt.strftime("%H:%M")
        return {"when": f"{day} at {clock}", "day": day, "time": clock, "date": nxt.date().isoformat(),
                "timezone": self.timezone}


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant of a wall time; a time inside a spring-forward gap maps to just after the gap."""
    naive = datetime.combine(day, wall)
    aware = naive.replace(tzinfo=zone)
    roundtrip = aware.astimezone(timezone.utc).astimezone(zone)
    if roundtrip.replace(tzinfo=None) != naive:   # nonexistent wall time (DST gap)
        return roundtrip
    return aware


def _parse_ranges(day: str, value) -> tuple[tuple[time, time], ...]:
    if value in (None, False) or (isinstance(value, str) and value.strip().lower() == "closed"):
        return ()
    parts = value if isinstance(value, list) else str(value).split(",")
    ranges = []
    for part in parts:
        m = _RANGE.match(str(part))
        if not m:
            raise HoursError(f"{day}: bad range {part!r} (use HH:MM-HH:MM, comma separated, or closed)")
        h1, m1, h2, m2 = map(int, m.groups())
        if h2 == 24 and m2 == 0:
            h2, m2 = 23, 59
        try:
            start, end = time(h1, m1), time(h2, m2)
        except ValueError:
            raise HoursError(f"{day}: bad time in {part!r}") from None
        if end <= start:
            raise HoursError(f"{day}: range {part!r} ends before it starts")
        ranges.append((start, end))
    return tuple(sorted(ranges))
