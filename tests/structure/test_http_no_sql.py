"""HTTP handlers hold no SQL: a query belongs to the module that owns its concept (issue #12).

Every string constant in gateway/http/ is scanned for a SQL statement. A handler that needs data
calls the owner (gateway.domain.*, gateway.inbox.*, gateway.journeys.*), so a rule about a table is
found, and changed, in one place.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import gateway

HTTP = Path(gateway.__file__).parent / "http"
SQL = re.compile(r"\b(SELECT\s.+?\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s)", re.S | re.I)

# file -> why it may still hold a query. Keep this short and shrinking.
ALLOWED = {
    "health.py": "readiness is the probe itself (SELECT 1 on the pool)",
}


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if SQL.search(node.value):
                found.append((node.lineno, node.value.strip().splitlines()[0][:80]))
    return found


def test_http_handlers_hold_no_sql():
    offenders = [f"gateway/http/{p.name}:{line}: {text}"
                 for p in sorted(HTTP.glob("*.py")) if p.name not in ALLOWED
                 for line, text in sql_strings(p)]
    assert not offenders, "SQL in HTTP handlers; move it to the concept's owner:\n" + "\n".join(offenders)


def test_the_scan_finds_sql(tmp_path):
    sample = tmp_path / "handler.py"
    sample.write_text('"""Doc: SELECT a FROM b in a docstring is prose."""\n'
                      'async def h(conn):\n    return await conn.fetch("SELECT id FROM agents WHERE id = $1", 1)\n'
                      'Q = f"""UPDATE contacts SET name = $2 WHERE id = $1"""\n')
    assert sorted(line for line, _ in sql_strings(sample)) == [3, 4]
