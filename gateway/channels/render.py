"""Rendering helpers shared by channels that cannot show what a message asks for."""
from __future__ import annotations

from typing import Iterable

from gateway.domain.types import Button


def render_numbered_menu(text: str, buttons: Iterable[Button]) -> str:
    """`text` followed by the buttons as a numbered menu ("1. Title\\n2. Title").

    For channels without buttons (SMS, email, >10 WhatsApp options); the customer answers with
    the number or the title, which the flow matches against the options.
    """
    menu = "\n".join(f"{i}. {b.title}" for i, b in enumerate(buttons, 1))
    if not menu:
        return text
    return f"{text}\n\n{menu}" if text else menu
