"""The shared inbox: plain SQL functions over an asyncpg connection.

Every function takes a connection so it composes inside the caller's transaction; parameters are
`$1..$n`. HTTP concerns (roles, JSON, status codes) live in gateway.http.inbox*; these modules
raise the small exceptions below and let the caller map them.
"""
from __future__ import annotations


class NotFound(LookupError):
    """The thing does not exist, or the caller may not see it (indistinguishable on purpose)."""


class Conflict(Exception):
    """The action does not fit the current state (already assigned, not resolved, ...)."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


class Invalid(ValueError):
    """A well-formed request that names something impossible (unknown agent, bad cursor)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message
