"""Loading the subsystems that plug themselves in (timer handlers and hooks, HTTP routes).

Every name listed is required: a module that is missing or fails to import stops the start with
an error naming the module and the exception, instead of a gateway that runs without it.
"""
from __future__ import annotations

import importlib


class PluginError(RuntimeError):
    """A listed plugin module could not be imported, or lacks the function it must provide."""


def load(names, attribute: str) -> list:
    """`attribute` (a function) of each module in `names`, in order."""
    found = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(f"plugin module {name} failed to import: {type(exc).__name__}: {exc}") from exc
        try:
            found.append(getattr(module, attribute))
        except AttributeError:
            raise PluginError(f"plugin module {name} has no {attribute}()") from None
    return found
