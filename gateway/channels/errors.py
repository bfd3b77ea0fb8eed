"""Errors shared by channel adapters."""
from __future__ import annotations


class PayloadError(ValueError):
    """A provider payload that cannot be a valid message (answer 400, do not retry)."""


class MediaDownloadError(RuntimeError):
    """Fetching a provider-hosted media file failed (network, auth or provider error)."""
