"""One owner per concept: the statements that write a concept's rows appear in its owner only.

These read the package's source, so a new `UPDATE conversations` in an HTTP handler or a raw timer
cancellation in a journey fails here, with the file and line, before it can drift from the owner's rules.
"""
from __future__ import annotations

import re
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
# seed data for benchmarks and fake servers is not a writer of live state
SEEDING = ("devtools", "bench", "fakes")

def _writes(table: str) -> re.Pattern:
    return re.compile(rf"\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+{table}\b", re.I)


OWNERS = {
    "gateway/domain/conversation.py": _writes("conversations"),
    "gateway/domain/timers.py": _writes("timers"),
}


def writers(pattern: re.Pattern) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if any(part in SEEDING for part in path.relative_to(PACKAGE).parts[:-1]):
            continue
        lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
        if lines:
            found[relative] = lines
    return found


def test_the_conversation_row_is_written_by_its_owner_only():
    found = writers(OWNERS["gateway/domain/conversation.py"])
    assert set(found) == {"gateway/domain/conversation.py"}, found


def test_episodes_are_written_by_the_conversation_owner_only():
    found = writers(_writes("episodes"))
    assert set(found) == {"gateway/domain/conversation.py"}, found


def test_identities_are_written_by_the_contacts_module_only():
    found = writers(_writes("identities"))
    assert set(found) == {"gateway/domain/contacts.py"}, found


def test_rollup_marks_are_made_by_the_conversation_owner_and_cleared_by_the_rollups():
    found = writers(_writes("rollup_dirty"))
    assert set(found) == {"gateway/domain/conversation.py", "gateway/inbox/rollups.py"}, found


def test_timers_are_written_by_their_owner_only():
    found = writers(OWNERS["gateway/domain/timers.py"])
    assert set(found) == {"gateway/domain/timers.py"}, found


def test_the_check_sees_a_writer_elsewhere():
    """The pattern finds the statements as code writes them, and not a read that locks the row."""
    pattern = OWNERS["gateway/domain/conversation.py"]
    assert pattern.search('await conn.execute("UPDATE conversations SET mode = $2 WHERE id = $1")')
    assert pattern.search('"""INSERT INTO conversations (contact_id)')
    assert not pattern.search("SELECT * FROM conversations WHERE id = $1 FOR UPDATE")
