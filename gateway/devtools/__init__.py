"""Developer tooling, not the runtime: `gateway simulate`, fake provider servers, test helpers.

Nothing under `gateway/` outside this package (and `gateway/devtools/bench`) imports from here; the CLI
imports `simulate` lazily, only when that command runs.
"""
