"""The Runtime handed around as `rt` is typed: its fields are, and so is every parameter that takes it.

An untyped `rt` hides what a function may reach; annotated, a reader (and a type checker) sees that
it is the Runtime and which of its fields exist.
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import gateway
from gateway.app.runtime import Runtime

ROOT = Path(gateway.__file__).parent
NAMES = {"rt", "runtime"}


def test_runtime_is_a_dataclass_with_no_untyped_bag_fields():
    loose = [f.name for f in dataclasses.fields(Runtime) if f.type in ("object", "object | None", "dict")]
    assert not loose, f"Runtime fields typed too loosely: {loose}"


def test_every_rt_parameter_is_annotated():
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs):
                    if arg.arg in NAMES and arg.annotation is None:
                        missing.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}({arg.arg})")
    assert not missing, "annotate these `rt: Runtime` (TYPE_CHECKING import):\n" + "\n".join(missing)
