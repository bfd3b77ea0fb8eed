"""Pure core rules: status monotonicity, channel choice, consent keywords, identities, settings."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from gateway.app.log import _mask_secrets
from gateway.app.settings import Settings, SettingsError, load_settings
from gateway.channels.modes import channel_modes, routing_policy
from gateway.domain import routing
from gateway.domain.consent import classify_keyword
from gateway.domain.identity import AddressError, address_for, normalize_email, normalize_phone
from gateway.domain.status import next_status
from gateway.domain.types import Channel, Purpose

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("current,new,expected", [
    (None, "sent", "sent"), ("queued", "sent", "sent"), ("sent", "delivered", "delivered"),
    ("delivered", "read", "read"), ("read", "delivered", None), ("delivered", "sent", None),
    ("read", "sent", None), ("sent", "failed", "failed"), ("queued", "undelivered", "undelivered"),
    ("delivered", "failed", None), ("read", "undelivered", None), ("failed", "delivered", "delivered"),
    ("undelivered", "read", "read"), ("failed", "sent", None), ("sent", "sent", None),
    ("sent", "bogus", None),
])
def test_status_only_moves_forward(current, new, expected):
    assert next_status(current, new) == expected


def test_out_of_order_status_sequence_ends_at_the_highest():
    status = "queued"
    for incoming in ("read", "delivered", "sent", "failed"):
        status = next_status(status, incoming) or status
    assert status == "read"


@pytest.mark.parametrize("text,expected", [
    ("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("unsubscribe", "stop"), ("StopAll", "stop_all"),
    ("CANCEL", "stop"), ("end", "stop"), ("quit", "stop"), ("START", "start"), ("yes", "start"),
    ("unstop", "start"), ("HELP", "help"), ("info", "help"), ("STOP PLEASE", None), ("please stop", None),
    ("stopp", None), ("", None), ("ＳＴＯＰ", None),
])
def test_consent_keywords_are_exact_single_words(text, expected):
    assert classify_keyword(text) == expected


def test_a_global_stop_word_stops_one_channel_where_the_carrier_does_not_allow_it():
    assert classify_keyword("STOPALL", global_words=()) == "stop"
    assert classify_keyword("optout", global_words=("OPTOUT",)) == "stop_all"


def test_phone_numbers_normalize_to_e164_across_channels():
    assert normalize_phone("whatsapp:+14155550100") == "+14155550100"
    assert normalize_phone("14155550100") == "+14155550100"  # WhatsApp wa_id has no "+"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    assert address_for(Channel.SMS, "+14155550100") == address_for(Channel.WHATSAPP, "whatsapp:+14155550100")
    with pytest.raises(AddressError):
        normalize_phone("not a number")
    with pytest.raises(AddressError):
        normalize_phone("+1")


def test_emails_are_lowercased_and_validated():
    assert normalize_email("Ana Pérez <Ana.Perez@Example.COM>") == "ana.perez@example.com"
    for bad in ("nope", "a@b", "@example.com", ""):
        with pytest.raises(AddressError):
            normalize_email(bad)


def reachable(*items):
    return [routing.Reachable(ch, addr, kind, at) for ch, addr, kind, at in items]


def test_reply_goes_to_the_channel_the_customer_last_used():
    r = reachable((Channel.SMS, "+1", "phone", NOW - timedelta(hours=1)),
                  (Channel.WHATSAPP, "+1", "phone", NOW - timedelta(minutes=5)),
                  (Channel.EMAIL, "a@x.io", "email", NOW - timedelta(days=1)))
    options = routing.route_options(r, now=NOW, purpose=Purpose.REPLY, blocked={}, whatsapp_template_available=False)
    route = routing.choose_route(options, explicit=None, last_inbound_channel=Channel.WHATSAPP)
    assert route.channel is Channel.WHATSAPP and not route.needs_template


def test_whatsapp_window_closed_means_template_or_another_channel():
    r = reachable((Channel.WHATSAPP, "+1", "phone", NOW - timedelta(hours=25)),
                  (Channel.SMS, "+1", "phone", None))
    closed = routing.route_options(r, now=NOW, purpose=Purpose.REPLY, blocked={}, whatsapp_template_available=False)
    assert closed.unavailable[Channel.WHATSAPP] == "whatsapp_window_closed"
    assert routing.choose_route(closed, explicit=None, last_inbound_channel=Channel.WHATSAPP).channel is Channel.SMS
    with_template = routing.route_options(r, now=NOW, purpose=Purpose.REPLY, blocked={},
                                          whatsapp_template_available=True)
    assert with_template.routes[Channel.WHATSAPP].needs_template
    assert routing.choose_route(with_template, explicit=Channel.WHATSAPP, last_inbound_channel=None).needs_template


def test_opted_out_channel_is_unavailable_with_its_reason():
    r = reachable((Channel.SMS, "+1", "phone", NOW), (Channel.EMAIL, "a@x.io", "email", None))
    options = routing.route_options(r, now=NOW, purpose=Purpose.REPLY, blocked={("sms", "+1"): "opted_out"},
                                    whatsapp_template_available=False)
    assert options.unavailable[Channel.SMS] == "opted_out"
    assert routing.choose_route(options, explicit=None, last_inbound_channel=Channel.SMS).channel is Channel.EMAIL
    assert routing.choose_route(options, explicit=Channel.SMS, last_inbound_channel=None) is None


def test_settings_validation_names_the_variable(tmp_path):
    base = {"GATEWAY_DATA_DIR": str(tmp_path)}
    for env, needle in [({"GATEWAY_HTTP_PORT": "eighty"}, "GATEWAY_HTTP_PORT"),
                        ({"GATEWAY_HTTP_PORT": "70000"}, "GATEWAY_HTTP_PORT"),
                        ({"GATEWAY_DATABASE_URL": "mysql://x"}, "GATEWAY_DATABASE_URL"),
                        ({"TWILIO_ACCOUNT_SID": "AC1"}, "TWILIO_AUTH_TOKEN"),
                        ({"GATEWAY_SMTP_HOST": "smtp.x"}, "GATEWAY_EMAIL_FROM"),
                        ({"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT")]:
        with pytest.raises(SettingsError, match=needle):
            load_settings({**base, **env}, dotenv=None)


def test_settings_read_dotenv_environment_wins_and_secrets_are_redacted(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('GATEWAY_HTTP_PORT=9000\nTWILIO_AUTH_TOKEN="tok"\nTWILIO_ACCOUNT_SID=AC1\n'
                      'TWILIO_FROM_NUMBER=+15550001111\n# comment\n')
    s = load_settings({"GATEWAY_HTTP_PORT": "9100", "GATEWAY_DATA_DIR": str(tmp_path),
                       "GATEWAY_DATABASE_URL": "postgresql://u:hunter2@db/x"}, dotenv=dotenv)
    assert s.http_port == 9100 and s.twilio_auth_token == "tok" and s.twilio_enabled
    red = s.redacted()
    assert red["twilio_auth_token"] == "***" and "hunter2" not in red["database_url"]
    assert s.secret_key and (tmp_path / "secret_key").read_text() == s.secret_key  # generated once
    assert load_settings({"GATEWAY_DATA_DIR": str(tmp_path)}, dotenv=None).secret_key == s.secret_key


def test_log_processor_masks_secret_fields():
    out = _mask_secrets(None, None, {"event": "x", "auth_token": "abc", "password": "p", "to": "+1"})
    assert out == {"event": "x", "auth_token": "***", "password": "***", "to": "+1"}


def test_sandbox_channels_are_routes_and_live_ones_are_preferred_when_the_customer_channel_is_unknown():
    r = reachable((Channel.SMS, "+1", "phone", NOW), (Channel.EMAIL, "a@x.io", "email", None))
    options = routing.route_options(r, now=NOW, purpose=Purpose.REPLY, blocked={}, whatsapp_template_available=False)
    assert set(options.routes) == {Channel.SMS, Channel.EMAIL} and not options.unavailable
    with_live = dataclasses.replace(options, live=frozenset({Channel.EMAIL, Channel.WEBCHAT}))
    # the customer wrote by SMS: the answer goes there, sandbox or not
    assert routing.choose_route(with_live, explicit=None, last_inbound_channel=Channel.SMS).channel is Channel.SMS
    assert routing.choose_route(options, explicit=None, last_inbound_channel=None).channel is Channel.SMS
    assert routing.choose_route(with_live, explicit=None, last_inbound_channel=None).channel is Channel.EMAIL


def test_each_channel_is_live_or_sandbox_on_its_own():
    assert set(channel_modes(Settings()).values()) == {"sandbox", "live"}   # web chat is its socket
    assert routing_policy(Settings()).live == frozenset({Channel.WEBCHAT})
    api_only = channel_modes(Settings(api_channel_webhook_url="https://example.com/hook"))
    assert api_only == {Channel.SMS: "sandbox", Channel.WHATSAPP: "sandbox", Channel.EMAIL: "sandbox",
                        Channel.WEBCHAT: "live", Channel.API: "live"}
    prod = routing_policy(Settings(twilio_account_sid="AC1", twilio_auth_token="t",
                                   twilio_from_number="+15550001111", whatsapp_reengage_template="hello"))
    assert prod.live == frozenset({Channel.SMS, Channel.WEBCHAT}) and prod.whatsapp_template_available


def test_address_kinds_come_from_one_rule():
    from gateway.domain.identity import address_kind

    assert address_kind(Channel.WHATSAPP, "+14155550100") == "phone"
    assert address_kind(Channel.WHATSAPP, "US.13491208655302741918") == "whatsapp_id"
    assert address_kind("sms", "+14155550100") == "phone"
    assert [address_kind(c, "x") for c in (Channel.EMAIL, Channel.WEBCHAT, Channel.API)] == ["email", "chat", "api"]
