"""The import graph points one way: a module imports only from its own layer or the layers below it.

Every module under gateway/ belongs to exactly one layer (a new module without one fails here, so
its author decides where it sits). Imports are read with `ast`, including those inside functions: a
lazy import is still a dependency. Imports under `if TYPE_CHECKING:` are left out: they exist for
annotations only (a handler annotated `rt: Runtime` is handed the runtime, it does not reach up for it).
"""
from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

# A channel package (gateway/channels/<name>/) owns its whole channel, and its parts sit at two heights:
# the modules that take messages in through the pipeline (its HTTP routes, the chat socket, intake glue
# such as email threading and the SMTP listener's start, the chat's identify, which merges contacts)
# are the channel's *edges*, between the HTTP app that mounts them and the features/pipeline they
# call; everything else of the package (adapters, signatures, senders, stores) stays in "channels".
EDGE_MODULES = ("routes", "socket", "intake", "identify")
CHANNEL_EDGES = tuple(f"gateway.channels.{d.name}.{m}" for d in sorted((ROOT / "channels").iterdir())
                      if (d / "__init__.py").exists() for m in EDGE_MODULES)

# Highest first. A module's layer is the one of the longest prefix that names it ("gateway" alone is
# the package's own __init__). The issue groups settings, log and metrics with the app; as imports go
# they sit at the bottom, since every layer reads settings and logs.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry", ("gateway.__main__", "gateway.app.cli", "gateway.flows.cli")),
    ("devtools", ("gateway.devtools", "gateway.flows.bench", "gateway.journeys.bench")),
    ("app", ("gateway", "gateway.app", "gateway.app.runtime", "gateway.app.embedded",
             # runtime plugins: each wires its package into the Runtime
             "gateway.journeys.plugin", "gateway.inbox.plugin")),
    ("http", ("gateway.http",)),
    ("edges", CHANNEL_EDGES),
    # what every route needs, the channels' too: errors, the app keys, bearer-token access, JSON bodies,
    # the OpenAPI descriptions (`@operation`)
    ("http base", ("gateway.http.errors", "gateway.http.keys", "gateway.http.access", "gateway.http.rights",
                   "gateway.http.body", "gateway.http.openapi")),
    ("features", ("gateway.inbox", "gateway.journeys", "gateway.flows.deploy", "gateway.retention")),
    ("pipeline", ("gateway.pipeline",
                  # inboxes: the defaults synced from settings, the senders of inboxes with their own credentials
                  "gateway.inboxes.defaults", "gateway.inboxes.senders")),
    ("bot", ("gateway.bot", "gateway.flows")),
    ("channels", ("gateway.channels", "gateway.infra.guarded_fetch")),
    # settings are read once and checked with each concept's own parser (consent regimes, ...)
    # (and which channels are live, a pure function of the settings that routing reads)
    ("settings", ("gateway.app.settings", "gateway.app.sandbox_secrets", "gateway.channels.modes")),
    ("domain", ("gateway.domain", "gateway.inboxes")),
    ("foundation", ("gateway.infra", "gateway.app.log", "gateway.app.metrics", "gateway.pipeline.queue",
                    "gateway.pipeline.ratelimit", "gateway.domain.text_parts", "gateway.domain.secret_keys",
                    "gateway.app.plugins",   # imports the plugin modules it is given by name, at start
                    # exception types raised at every layer; the module imports nothing
                    "gateway.channels.errors")),
]
RANK = {name: len(LAYERS) - i for i, (name, _) in enumerate(LAYERS)}

# Known upward imports, each removed by the change that names it. Keep this list short and shrinking.
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = ("gateway", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def layer_of(module: str) -> str | None:
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            covers = module == prefix or (prefix != "gateway" and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    return best


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The gateway modules `module` imports anywhere in its body."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and _is_type_checking(block.test):
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from gateway import thread` imports the module gateway.domain.thread
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("gateway"):
                found.add(name)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def edges() -> list[tuple[str, str]]:
    """(importer, imported) for every import between two modules that both have a layer."""
    mods = modules()
    known = set(mods)
    return sorted((m, target) for m, path in mods.items() for target in imported(m, path, known)
                  if target != m and layer_of(m) and layer_of(target))


def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"add these modules to a layer in {__file__}: {missing}"


def test_no_import_goes_up_a_layer():
    upward = [(a, b) for a, b in edges() if RANK[layer_of(a)] < RANK[layer_of(b)]]
    unexpected = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in upward if (a, b) not in ALLOWED]
    assert not unexpected, "imports from a lower layer to a higher one:\n" + "\n".join(unexpected)


def test_allow_list_holds_only_real_violations():
    upward = {(a, b) for a, b in edges() if RANK[layer_of(a)] < RANK[layer_of(b)]}
    assert not ALLOWED - upward, f"remove these fixed entries from ALLOWED: {sorted(ALLOWED - upward)}"
