"""Business hours in the business time zone, across a DST switch."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.flows.hours import BusinessHours, HoursError

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = BusinessHours.parse({"timezone": "Europe/Berlin", "monday": "09:00-12:00, 13:00-18:00",
                             "tuesday": "09:00-18:00", "friday": "09:00-17:00", "saturday": "closed",
                             "closed_dates": ["2024-12-24"]})


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_open_and_closed_in_local_time():
    assert HOURS.is_open(datetime(2024, 5, 6, 10, 0, tzinfo=BERLIN))          # Monday morning
    assert not HOURS.is_open(datetime(2024, 5, 6, 12, 30, tzinfo=BERLIN))     # lunch break
    assert not HOURS.is_open(datetime(2024, 5, 6, 18, 0, tzinfo=BERLIN))      # closing time is exclusive
    assert not HOURS.is_open(datetime(2024, 5, 8, 10, 0, tzinfo=BERLIN))      # Wednesday not listed
    assert HOURS.is_open(utc(2024, 5, 6, 7, 30))                               # 09:30 CEST given in UTC
    assert not HOURS.is_open(datetime(2024, 12, 24, 10, 0, tzinfo=BERLIN))    # closed date (a Tuesday)


def test_next_open_over_the_spring_dst_switch():
    # Saturday 30 March 2024, 20:00 UTC (21:00 CET). Clocks go forward on Sunday 31 March.
    nxt = HOURS.next_open(utc(2024, 3, 30, 20, 0))
    assert nxt.astimezone(BERLIN).replace(tzinfo=None) == datetime(2024, 4, 1, 9, 0)
    assert nxt.astimezone(timezone.utc) == utc(2024, 4, 1, 7, 0)            # CEST: UTC+2
    # A week earlier the same wall time was an hour later in UTC.
    assert HOURS.next_open(utc(2024, 3, 23, 20, 0)).astimezone(timezone.utc) == utc(2024, 3, 25, 8, 0)


def test_next_open_over_the_autumn_dst_switch():
    nxt = HOURS.next_open(utc(2024, 10, 26, 20, 0))   # Saturday; clocks go back on Sunday 27 October
    assert nxt.astimezone(timezone.utc) == utc(2024, 10, 28, 8, 0)             # CET: UTC+1


def test_describe_next_open():
    assert HOURS.describe_next_open(datetime(2024, 5, 11, 15, 0, tzinfo=BERLIN))["when"] == "Monday at 09:00"
    assert HOURS.describe_next_open(datetime(2024, 5, 6, 12, 30, tzinfo=BERLIN))["when"] == "today at 13:00"
    assert HOURS.describe_next_open(datetime(2024, 5, 6, 19, 0, tzinfo=BERLIN))["when"] == "tomorrow at 09:00"
    # Thursday evening: Friday is open, so not "Monday"
    assert HOURS.describe_next_open(datetime(2024, 5, 9, 19, 0, tzinfo=BERLIN))["when"] == "tomorrow at 09:00"


def test_open_now_returns_now():
    now = datetime(2024, 5, 6, 10, 0, tzinfo=BERLIN)
    assert HOURS.next_open(now) == now


def test_wall_time_in_a_dst_gap_maps_after_the_gap():
    hours = BusinessHours.parse({"timezone": "Europe/Berlin", "sunday": "02:30-05:00"})
    nxt = hours.next_open(utc(2024, 3, 30, 12, 0))
    assert nxt.astimezone(timezone.utc) == utc(2024, 3, 31, 1, 30)      # 03:30 CEST
    assert nxt - utc(2024, 3, 30, 12, 0) < timedelta(days=1)


@pytest.mark.parametrize("spec", [
    {"monday": "09:00-17:00"},
    {"timezone": "Nowhere/City"},
    {"timezone": "UTC", "monday": "17:00-09:00"},
    {"timezone": "UTC", "someday": "09:00-17:00"},
])
def test_bad_specs(spec):
    with pytest.raises(HoursError):
        BusinessHours.parse(spec)
