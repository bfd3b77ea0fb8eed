"""Every module under gateway/ opens with a docstring that says what it owns.

A newcomer reads the first line of each file to find where a rule lives; a module without one (or
with a placeholder) fails here. Whether the words are right is for review; that they exist is not.
"""
from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent


def test_every_module_starts_with_a_docstring():
    missing, thin = [], []
    for path in sorted(ROOT.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = str(path.relative_to(ROOT.parent))
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), name))
        if not doc:
            missing.append(name)
        elif len(doc.split("\n", 1)[0].split()) < 4:
            thin.append(f"{name}: {doc.splitlines()[0]!r}")
    assert not missing, f"modules without a docstring saying what they own: {missing}"
    assert not thin, f"docstrings too short to say what the module owns: {thin}"
