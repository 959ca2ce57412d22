"""The package layering: no import cycles in tasks/, db/ and bench/ (lazy
in-function imports included), db/ never imports tasks/, nothing in tasks/ or
db/ outside tasks/local/ imports the local stack except the `up` command (the
bench starts its own stack with it); the folders' layers (LAYERS, one line a
folder), the package face that imports nothing, the few loose modules and the
400-line bound."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    assert "tasks.broker.wakeup" in graph["tasks.worker.queue_tick"]
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


# ── The layers between the folders ───────────────────────────────────────────

#: What sends, serves or commands: the building blocks below never reach up.
_ABOVE_THE_BLOCKS = ("tasks.sending", "tasks.maintenance", "tasks.broker", "tasks.worker",
                     "tasks.relay", "tasks.portal", "tasks.staff", "tasks.cli")
#: What serves or commands: the worker's parts never reach these.
_SURFACES = ("tasks.relay", "tasks.portal", "tasks.staff", "tasks.cli")


@dataclass(frozen=True)
class Layer:
    """What one folder may not import, and who alone may import it (besides itself)."""

    never_imports: tuple[str, ...] = ()
    only_imported_by: tuple[str, ...] | None = None


#: One line a folder. The bench is a tool that drives the program from
#: outside (it starts its own stack, it runs the CLI as a shell would): the
#: `only_imported_by` rules are about tasks/ and db/.
LAYERS: dict[str, Layer] = {
    "tasks.messages":     Layer(never_imports=_ABOVE_THE_BLOCKS),
    "tasks.providers":    Layer(never_imports=_ABOVE_THE_BLOCKS),
    "tasks.auth":         Layer(never_imports=_ABOVE_THE_BLOCKS),
    "tasks.coordination": Layer(never_imports=_ABOVE_THE_BLOCKS),
    "tasks.broker":       Layer(never_imports=("tasks.sending", "tasks.maintenance",
                                               "tasks.worker", *_SURFACES)),
    "tasks.sending":      Layer(never_imports=("tasks.maintenance", "tasks.worker", *_SURFACES)),
    "tasks.maintenance":  Layer(never_imports=("tasks.worker", *_SURFACES)),
    "tasks.worker":       Layer(never_imports=_SURFACES),
    "tasks.cli":          Layer(only_imported_by=()),
    "tasks.local":        Layer(only_imported_by=("tasks.cli.up",)),
    "db":                 Layer(never_imports=("tasks",)),
}

#: Imports that break a line of LAYERS today, each with the move that ends it.
#: A test fails once one is gone, so the list only shrinks.
KNOWN_BREACHES: dict[tuple[str, str], str] = {}

#: The most modules loose at the top of tasks/ (everything else has a folder).
MAX_LOOSE_MODULES = 10
#: The longest a module of tasks/, db/ or bench/ may be.
MAX_MODULE_LINES = 400

#: The Celery task names the worker registers (the broker's message names).
TASK_NAMES = ("process_notification_queue", "send_sms", "send_email", "send_email_batch",
              "send_reply_digests")


def _under(name: str, folder: str) -> bool:
    return name == folder or name.startswith(folder + ".")


def _breaches(folder: str, layer: Layer) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for name, targets in _graph().items():
        for target in targets:
            if _under(name, folder) and any(_under(target, f) for f in layer.never_imports):
                found.add((name, target))
            if (layer.only_imported_by is not None and _under(target, folder)
                    and not _under(name, folder) and not name.startswith("bench")
                    and not any(_under(name, f) for f in layer.only_imported_by)):
                found.add((name, target))
    return found


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_each_folder_keeps_its_layer(folder: str) -> None:
    assert (ROOT / Path(*folder.split("."))).is_dir(), f"{folder} is in LAYERS but gone"
    breaches = _breaches(folder, LAYERS[folder]) - set(KNOWN_BREACHES)
    assert not breaches, "\n".join(f"{a} imports {b}" for a, b in sorted(breaches))


def test_the_layer_check_sees_a_breach() -> None:
    # Guards the table's reading: sending imports messages (allowed), and a
    # rule that forbade it would be seen.
    assert not _breaches("tasks.sending", LAYERS["tasks.sending"])
    assert _breaches("tasks.sending", Layer(never_imports=("tasks.messages",)))
    assert _breaches("tasks.messages", Layer(only_imported_by=("tasks.cli",)))


def test_known_breaches_are_still_there() -> None:
    graph = _graph()
    gone = [pair for pair in KNOWN_BREACHES if pair[1] not in graph.get(pair[0], set())]
    assert not gone, f"fixed, take them out of KNOWN_BREACHES: {gone}"


def test_every_folder_of_tasks_has_a_layer_or_sits_on_top() -> None:
    # A new folder is one line of LAYERS, or one of the top folders that may
    # import the blocks (they are named in the rules above).
    folders = {f"tasks.{p.name}" for p in (ROOT / "tasks").iterdir()
               if (p / "__init__.py").is_file()}
    top = {"tasks.worker", "tasks.relay", "tasks.portal", "tasks.staff", "tasks.maintenance"}
    assert folders - top <= set(LAYERS), sorted(folders - top - set(LAYERS))


# ── The package face, the loose modules, the length bound ────────────────────

def test_the_package_face_imports_nothing() -> None:
    tree = ast.parse((ROOT / "tasks" / "__init__.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, "tasks/__init__.py must import nothing (celery -A tasks: tasks/celery.py)"
    # So the face closes no cycle: every module of tasks/ imports it first.
    graph = _graph()
    faced = {name: targets | ({"tasks"} if name.startswith("tasks.") else set())
             for name, targets in graph.items()}
    cycle = _find_cycle(faced)
    assert cycle is None, "import cycle through the package face: " + " -> ".join(cycle or [])


def test_celery_finds_the_app_through_the_package() -> None:
    # What `celery -A tasks worker` does, in a fresh interpreter: find the app
    # by the package's name, then import the modules the worker imports at start.
    script = (
        "import json, sys\n"
        "import tasks\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tasks.'))\n"
        "from celery.app.utils import find_app\n"
        "from tasks.broker.app import app as worker_app\n"
        "app = find_app('tasks')\n"
        "app.loader.import_default_modules()\n"
        "print(json.dumps({'loaded_by_face': loaded, 'same': app is worker_app,\n"
        "                  'tasks': sorted(app.tasks)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["loaded_by_face"] == []
    assert found["same"]
    assert set(TASK_NAMES) <= set(found["tasks"])


def test_few_loose_modules_at_the_top_of_tasks() -> None:
    loose = sorted(p.name for p in (ROOT / "tasks").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE_MODULES, f"{len(loose)} loose modules in tasks/: {loose}"


def test_no_module_over_the_line_bound() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in _modules().values()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"over {MAX_MODULE_LINES} lines (split by concept): {long}"
