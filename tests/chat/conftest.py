"""Fixtures for the web chat tests (the shared ones come from tests/conftest.py)."""
from __future__ import annotations

import pytest

IDENTITY_SECRET = "identity-test-secret"


@pytest.fixture
def chat_settings(settings):
    """The echo bot ("You said: ...") answers; identity tokens are signed with IDENTITY_SECRET."""
    return settings.with_(default_handler="echo", chat_identity_secret=IDENTITY_SECRET)
