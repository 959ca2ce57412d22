"""The package layering: no import cycles in tasks/, db/ and bench/ (lazy
in-function imports included), db/ never imports tasks/, nothing in tasks/ or
db/ outside tasks/local/ imports the local stack except the `up` command (the
bench starts its own stack with it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "db", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module `name` imports, at any depth of its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the submodule when there is one,
            # else a name defined in `pkg` itself.
            candidates = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for candidate in candidates:
            # The deepest project module the name refers to.
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # The implicit edge from a submodule to its package's __init__ is left
    # out: an __init__ that re-exports its submodules is not a cycle.
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_lazy_imports():
    # Guards the walker itself: queue_tick imports wakeup at the top, and the
    # registry imports the Twilio adapter inside a function.
    graph = _graph()
    assert "tasks.maintenance.wakeup" in graph["tasks.worker.queue_tick"]
    assert "tasks.providers.twilio_sms" in graph["tasks.providers.registry"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # The bench is walked too: its runner imports each scenario module.
    assert "bench.trigger" in graph["bench.runner"]


def test_no_import_cycles():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_db_never_imports_tasks():
    upward = {
        (name, target)
        for name, targets in _graph().items()
        if name == "db" or name.startswith("db.")
        for target in targets
        if target == "tasks" or target.startswith("tasks.")
    }
    assert not upward


def test_local_stack_is_used_only_by_up():
    users = {
        name
        for name, targets in _graph().items()
        if not name.startswith(("tasks.local", "bench"))
        and any(t.startswith("tasks.local") for t in targets)
    }
    assert users <= {"tasks.cli.up"}
