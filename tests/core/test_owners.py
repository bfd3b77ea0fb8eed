"""One owner per concept: the statements that write a concept's rows appear in its owner only.

These read the package's source, so a new `UPDATE conversations` in an HTTP handler or a raw timer
cancellation in a journey fails here, with the file and line, before it can drift from the owner's rules.
In the database, the one sanctioned writer of `contacts` and `identities` is the SQL function
`gateway_resolve_contact` (migrations/0002), which the batched ingest (`gateway_ingest`) calls to create
the contact of a new sender.
"""
from __future__ import annotations

import re
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
MIGRATIONS = PACKAGE.parent / "migrations"
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
        text = path.read_text()
        # over the whole text, so a statement split after UPDATE / INSERT INTO is found too
        lines = sorted({text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)})
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


def _elsewhere(pattern: re.Pattern, owner: str) -> list[str]:
    """`file:line` of every write outside the owner (what a failure names)."""
    return [f"{path}:{line}" for path, lines in writers(pattern).items() if path != owner for line in lines]


def test_contacts_are_written_by_the_contacts_module_only():
    """Create, profile and attribute edits, merge bookkeeping, erasure: gateway/domain/contacts.py."""
    pattern = _writes("contacts")
    offenders = _elsewhere(pattern, "gateway/domain/contacts.py")
    assert offenders == [], "contacts written outside gateway/domain/contacts.py at:\n" + "\n".join(offenders)
    assert "gateway/domain/contacts.py" in writers(pattern)   # the pattern does find the owner's writes


def test_in_the_database_only_gateway_resolve_contact_writes_contacts_and_identities():
    """The batched ingest creates a new sender's contact inside the database: through
    gateway_resolve_contact, the one SQL function that writes these tables."""
    pattern = re.compile(r"\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(contacts|identities)\b", re.I)
    function = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(.*?\$\$(.*?)\$\$", re.I | re.S)
    found, inside = [], 0
    for path in sorted(MIGRATIONS.glob("*.sql")):
        text = path.read_text()
        sanctioned = [m.span(2) for m in function.finditer(text) if m.group(1) == "gateway_resolve_contact"]
        for m in pattern.finditer(text):
            if any(start <= m.start() < end for start, end in sanctioned):
                inside += 1
            else:
                found.append(f"migrations/{path.name}:{text.count(chr(10), 0, m.start()) + 1}")
    assert found == [], "contacts or identities written outside gateway_resolve_contact at:\n" + "\n".join(found)
    assert inside >= 3   # its own writes are seen: the check does look inside function bodies


def test_timers_are_written_by_their_owner_only():
    found = writers(OWNERS["gateway/domain/timers.py"])
    assert set(found) == {"gateway/domain/timers.py"}, found


def test_the_check_sees_a_writer_elsewhere():
    """The pattern finds the statements as code writes them, and not a read that locks the row."""
    pattern = OWNERS["gateway/domain/conversation.py"]
    assert pattern.search('await conn.execute("UPDATE conversations SET mode = $2 WHERE id = $1")')
    assert pattern.search('"""INSERT INTO conversations (contact_id)')
    assert not pattern.search("SELECT * FROM conversations WHERE id = $1 FOR UPDATE")
    assert _writes("contacts").search('"""UPDATE\n    contacts SET name = $2')
    assert not _writes("contacts").search("UPDATE contacts_archive SET x = 1")
