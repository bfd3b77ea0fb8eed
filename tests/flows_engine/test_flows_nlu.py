"""Normalization, intent matching with typos, menu answers and the multilingual handoff intent."""
import pytest

from gateway.flows.model import Option
from gateway.flows.nlu import (BACK_WORDS, CANCEL_WORDS, HANDOFF_EXAMPLES, HANDOFF_KEYWORDS, IntentModel, is_control,
                               match_intent, match_option, menu_index, normalize)

ORDER = IntentModel.build("order_status", ["where is my order", "track my order", "order status"],
                          ["tracking", "parcel"], 80)
FAQ = IntentModel.build("faq", ["what are your opening hours", "how do i return an item"], ["refund"], 80)
HUMAN = IntentModel.build("human", HANDOFF_EXAMPLES, HANDOFF_KEYWORDS, 80)
OPTIONS = (Option("order_status", "Order status"), Option("faq", "Questions (FAQ)"),
           Option("human", "Talk to a person"))


@pytest.mark.parametrize("raw, expected", [
    ("Pleeease!!", "please"),
    ("  Où   est ma COMMANDE ? ", "ou est ma commande"),
    ("Straße", "strasse"),
    ("AB-12345", "ab 12345"),
    ("1000 items", "1000 items"),
    ("Hiiii   there", "hi there"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("text, intent", [
    ("where is my order", "order_status"),
    ("wher is my ordr", "order_status"),
    ("hi!! where is my order AB-12345 pleeease", "order_status"),
    ("any tracking info?", "order_status"),
    ("my parcle", "order_status"),                 # keyword with a transposition
    ("what are your openin hours", "faq"),
    ("I want a REFUND", "faq"),
])
def test_intents_tolerate_typos_and_noise(text, intent):
    match = match_intent(normalize(text), [ORDER, FAQ])
    assert match is not None and match.intent == intent


@pytest.mark.parametrize("text", ["my", "hello", "the weather is nice today", "asdf qwerty"])
def test_unrelated_text_matches_nothing(text):
    assert match_intent(normalize(text), [ORDER, FAQ]) is None


def test_threshold_is_per_intent():
    strict = IntentModel.build("order_status", ["where is my order"], [], 99)
    assert match_intent(normalize("wher is my ordr"), [strict]) is None
    assert match_intent(normalize("where is my order"), [strict]) is not None


@pytest.mark.parametrize("text", [
    "agent", "I want a human", "humna please", "real person", "let me talk to someone", "operator",
    "representative", "representitive", "quiero hablar con un humano", "una persona por favor", "agente",
    "ich will einen Mitarbeiter", "mit einem Menschen sprechen", "Mensch!", "un conseiller svp", "humain",
    "falar com um atendente", "voglio un operatore umano", "AGENNNT",
])
def test_handoff_is_multilingual_and_typo_tolerant(text):
    match = match_intent(normalize(text), [HUMAN])
    assert match is not None, text


@pytest.mark.parametrize("text", ["where is my order", "thanks", "I want a refund", "my package is late"])
def test_handoff_does_not_fire_on_ordinary_messages(text):
    assert match_intent(normalize(text), [HUMAN]) is None


@pytest.mark.parametrize("text, expected", [
    ("2", "faq"), ("2.", "faq"), ("#2", "faq"), ("option 2", "faq"), ("two", "faq"), ("second", "faq"),
    ("the second one", "faq"), ("zwei", "faq"), ("dos", "faq"), ("deuxième", "faq"), ("segundo", "faq"),
    ("1", "order_status"), ("first", "order_status"), ("uno", "order_status"), ("3", "human"),
    ("tercero", "human"), ("faq", "faq"), ("order_status", "order_status"),
    ("order staus", "order_status"), ("talk to a person please", "human"),
])
def test_menu_answers(text, expected):
    option = match_option(text, normalize(text), OPTIONS)
    assert option is not None and option.id == expected


@pytest.mark.parametrize("text", ["4", "0", "fifth", "banana", "", "1 2"])
def test_menu_answers_that_select_nothing(text):
    assert match_option(text, normalize(text), OPTIONS) is None


def test_menu_index_words():
    assert menu_index("third") == 3 and menu_index("10") == 10 and menu_index("hello") is None


def test_control_words():
    assert is_control(normalize("Cancel!"), CANCEL_WORDS)
    assert is_control(normalize("cancle"), CANCEL_WORDS)
    assert is_control(normalize("go back"), BACK_WORDS)
    assert is_control(normalize("zurück"), BACK_WORDS)
    assert not is_control(normalize("cancel my order please, it is wrong"), CANCEL_WORDS)
    assert not is_control(normalize("I want to go back to Spain"), BACK_WORDS)
