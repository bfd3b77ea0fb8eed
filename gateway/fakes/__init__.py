"""Fake provider servers speaking the real wire formats, for tests and `gateway bench`."""
