from gateway.channels.render import render_numbered_menu
from gateway.domain.types import Button


def test_numbered_menu_follows_text():
    buttons = (Button("yes", "Yes"), Button("no", "No, thanks"))
    assert render_numbered_menu("Confirm?", buttons) == "Confirm?\n\n1. Yes\n2. No, thanks"


def test_numbered_menu_without_text_or_buttons():
    assert render_numbered_menu("", (Button("a", "A"),)) == "1. A"
    assert render_numbered_menu("Just text", ()) == "Just text"
