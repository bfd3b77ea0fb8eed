"""The message pipeline: intake and group-commit ingest, the Redis Streams queue, the worker and processor that order turns, and the provider-agnostic outbox.
"""
