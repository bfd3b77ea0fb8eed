"""Journey definitions, templates and guard math, without a server."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.domain.types import Channel
from gateway.journeys import guards
from gateway.journeys.model import JourneyError, SendStep, parse_journey, parse_policy
from gateway.journeys.registry import JourneyRegistry
from gateway.journeys.templates import TemplateError, parse_template

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
REPO_JOURNEYS = Path(__file__).resolve().parents[2] / "flows" / "journeys"

MINIMAL = """
name: j
entry: {event: signed_up, require: [url]}
steps:
  - id: hello
    send: {template: t, channels: [sms, email]}
templates:
  t:
    variables:
      name: {from: contact.name, default: friend}
      url: {from: event.url}
    sms: "Hi {name}: {url}"
    email: {subject: "Hi {name}", text: "{url}", html: "<a href='{url}'>{name}</a>"}
"""


def test_shipped_examples_load_and_validate():
    registry = JourneyRegistry.load(REPO_JOURNEYS)
    assert {"cart_recovery", "onboarding"} <= set(registry.journeys)
    cart = registry.current("cart_recovery")
    assert cart.goal.event == "order_placed" and cart.entry.event == "cart_abandoned"
    reminder = cart.steps["reminder"]
    assert isinstance(reminder, SendStep)
    assert reminder.channels == (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL)
    assert reminder.fallback_after == timedelta(minutes=15)
    # shared templates are folded into the stored, self-contained definition
    onboarding = registry.current("onboarding")
    assert "welcome" in onboarding.templates and "welcome:" in onboarding.source
    assert registry.policy.frequency_cap == 2
    assert registry.policy.quiet_hours == guards.QuietHours(time(21), time(8))


def test_minimal_journey_parses_and_version_follows_the_text():
    a = parse_journey(MINIMAL)
    b = parse_journey(MINIMAL.replace("Hi {name}:", "Hello {name}:"))
    assert a.first_step == "hello" and a.steps["hello"].next == "end"
    assert a.version != b.version


@pytest.mark.parametrize("change, message", [
    (("require: [url]", "require: []"), "'url' has no default"),
    (("Hi {name}: {url}", "Hi {name}: {url} {coupon}"), "not declared"),
    (("Hi {name}: {url}", "Hi {name.__class__}"), "plain {name}"),
    (("Hi {name}: {url}", "Hi {name!r}"), "plain {name}"),
    (("channels: [sms, email]", "channels: [sms, whatsapp]"), "no whatsapp variant"),
    (("channels: [sms, email]", "channels: [sms, pigeon]"), "channels must be"),
    (("template: t,", "template: nope,"), "unknown template"),
    (("entry: {event: signed_up", "entry: {event: 'bad name'"), "not an event name"),
])
def test_invalid_definitions_are_rejected_at_load(change, message):
    with pytest.raises(JourneyError, match=message.replace("{", r"\{").replace("(", r"\(")):
        parse_journey(MINIMAL.replace(*change))


def test_goto_unknown_step_and_instant_loops_are_rejected():
    looping = """
name: loop
entry: {event: x}
steps:
  - {id: a, update: {attributes: {k: 1}}}
  - {id: b, branch: {cases: [{if: {variant: v}, goto: a}], else: a}}
"""
    with pytest.raises(JourneyError, match="loop without a wait"):
        parse_journey(looping)
    with_wait = looping.replace("- {id: a, update: {attributes: {k: 1}}}",
                                "- {id: a, wait: {duration: 1d}}")
    parse_journey(with_wait)
    with pytest.raises(JourneyError, match="unknown step 'zzz'"):
        parse_journey(looping.replace("else: a", "else: zzz"))


def test_template_rendering_is_safe_and_localized():
    tpl = parse_template("t", {
        "variables": {"name": {"from": "contact.name", "default": "there"}, "url": {"from": "event.url"}},
        "sms": "Hi {name}: {url}",
        "email": {"subject": "Hi {name}", "text": "{url}", "html": "<b>{name}</b>"},
        "whatsapp": {"template": "cart", "language": "en_US", "parameters": ["{name}", "{url}"]},
        "locales": {"es": {"sms": "Hola {name}: {url}"}},
    })
    ctx = {"event": {"url": "https://x.test/{evil}"}, "contact": {"name": "<Ann>"}, "attributes": {}}
    sms = tpl.render(Channel.SMS, None, ctx)
    assert sms.text == "Hi <Ann>: https://x.test/{evil}"         # braces in values stay literal
    assert tpl.render(Channel.SMS, "es_MX", ctx).text.startswith("Hola")   # es_MX -> es
    email = tpl.render(Channel.EMAIL, "es", ctx)                  # no es email: default variant
    assert email.subject == "Hi <Ann>" and email.html == "<b>&lt;Ann&gt;</b>"
    wa = tpl.render(Channel.WHATSAPP, None, ctx)
    assert wa.template.name == "cart" and wa.template.parameters == ("<Ann>", "https://x.test/{evil}")
    no_name = {"event": {"url": "u"}, "contact": {"name": None}, "attributes": {}}
    assert tpl.render(Channel.SMS, None, no_name).text == "Hi there: u"
    with pytest.raises(TemplateError, match="no value"):
        tpl.render(Channel.SMS, None, {"event": {}, "contact": {}, "attributes": {}})


def test_policy_overrides():
    policy = parse_policy({"frequency_cap": False, "quiet_hours": False, "fallback_after": "5m"})
    assert policy.frequency_cap is None and policy.quiet_hours is None
    assert policy.fallback_after == timedelta(minutes=5)


# -- guards ------------------------------------------------------------------------------------

QUIET = guards.QuietHours(time(21), time(8))


def test_quiet_hours_wait_for_next_allowed_minute_across_spring_forward():
    # Sat 2024-03-09 23:30 EST; clocks jump 02:00 -> 03:00 overnight. 08:00 EDT is 12:00 UTC,
    # not 13:00 UTC as "add 8.5 hours" would give.
    now = datetime(2024, 3, 10, 4, 30, tzinfo=UTC)
    assert guards.next_allowed(now, NY, QUIET) == datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    # fall back: Sun 2024-11-03 01:30 (ambiguous) -> 08:00 EST = 13:00 UTC
    now = datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    assert guards.next_allowed(now, NY, QUIET) == datetime(2024, 11, 3, 13, 0, tzinfo=UTC)
    # daytime: allowed now; early morning before the end: same day
    noon = datetime(2024, 3, 10, 16, 0, tzinfo=UTC)
    assert guards.next_allowed(noon, NY, QUIET) == noon
    assert guards.next_allowed(datetime(2024, 7, 1, 9, 0, tzinfo=UTC), NY, QUIET) == \
        datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def test_wall_time_inside_a_dst_gap_resolves_to_the_transition():
    # 02:30 does not exist in New York on 2024-03-10: the first instant at/after it is 03:00 EDT
    assert guards.first_instant(datetime(2024, 3, 10).date(), time(2, 30), NY) == \
        datetime(2024, 3, 10, 7, 0, tzinfo=UTC)
    assert guards.next_allowed(datetime(2024, 3, 10, 5, 0, tzinfo=UTC), NY,
                               guards.QuietHours(time(22), time(2, 30))) == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)


def test_local_day_is_23_or_25_hours_on_dst_days():
    start, end = guards.local_day_bounds(datetime(2024, 3, 10, 15, 0, tzinfo=UTC), NY)
    assert (start, end - start) == (datetime(2024, 3, 10, 5, 0, tzinfo=UTC), timedelta(hours=23))
    start, end = guards.local_day_bounds(datetime(2024, 11, 3, 15, 0, tzinfo=UTC), NY)
    assert (start, end - start) == (datetime(2024, 11, 3, 4, 0, tzinfo=UTC), timedelta(hours=25))


def test_next_time_of_day():
    now = datetime(2024, 3, 9, 16, 0, tzinfo=UTC)       # 11:00 EST
    assert guards.next_time_of_day(now, NY, time(10)) == datetime(2024, 3, 10, 14, 0, tzinfo=UTC)  # 10:00 EDT
    assert guards.next_time_of_day(now, NY, time(12)) == datetime(2024, 3, 9, 17, 0, tzinfo=UTC)


def test_time_zone_from_profile_then_phone_then_default():
    assert guards.contact_zone("Europe/Madrid", "+14155550100").key == "Europe/Madrid"
    assert guards.contact_zone(None, "+14155550100").key == "America/Los_Angeles"
    assert guards.contact_zone(None, "+34612345678").key == "Europe/Madrid"
    assert guards.contact_zone("Not/AZone", None, "Asia/Tokyo").key == "Asia/Tokyo"
    assert guards.contact_zone(None, None).key == "UTC"


def test_frequency_cap_last_slot_goes_to_the_higher_priority_journey():
    assert guards.frequency_verdict(0, 2, 1, [10]) is None
    assert guards.frequency_verdict(1, 2, 1, [10]) == "frequency_cap"     # yields the last slot
    assert guards.frequency_verdict(1, 2, 10, [1]) is None                 # takes it
    assert guards.frequency_verdict(1, 2, 5, [5]) is None                  # equal priority: first come
    assert guards.frequency_verdict(2, 2, 99, []) == "frequency_cap"
    assert guards.frequency_verdict(7, None, 0, []) is None


def test_busy_reason():
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    idle = frozenset({"start", "end"})
    conv = {"mode": "agent", "status": "open", "flow_state": None, "last_inbound_at": None}
    assert guards.busy_reason(conv, now, idle_states=idle, flow_window=timedelta(minutes=30)) == "agent_conversation"
    conv = {"mode": "agent", "status": "resolved", "flow_state": None, "last_inbound_at": None}
    assert guards.busy_reason(conv, now, idle_states=idle, flow_window=timedelta(minutes=30)) is None
    conv = {"mode": "bot", "status": "open", "flow_state": "ask_size", "last_inbound_at": now - timedelta(minutes=5)}
    assert guards.busy_reason(conv, now, idle_states=idle, flow_window=timedelta(minutes=30)) == "in_flow"
    conv["last_inbound_at"] = now - timedelta(hours=2)           # abandoned mid-flow
    assert guards.busy_reason(conv, now, idle_states=idle, flow_window=timedelta(minutes=30)) is None
    conv = {"mode": "bot", "status": "open", "flow_state": "end", "last_inbound_at": now}
    assert guards.busy_reason(conv, now, idle_states=idle, flow_window=timedelta(minutes=30)) is None
