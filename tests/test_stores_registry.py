"""One chooser, one list of engines: a new coordination store is one class listed in one place.

The decisions (rate limits, tick marker, wake-up, sign-in and worker
counters) are written over the interface and never name an engine or its
driver; only tasks/coordination/stores.py lists the engines.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path

import pytest

from tasks.coordination.store import CoordinationStore, Where
from tasks.coordination.store_process import ProcessStore
from tasks.coordination.stores import STORES, choose_store, coordination_redis_url
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
AMQP = "amqp://guest:guest@127.0.0.1:5672/unused"
ENGINE_MODULES = {"tasks.coordination.store_redis", "tasks.coordination.store_postgres",
                  "tasks.coordination.store_process"}
#: The modules that decide over the interface.
DECISIONS = ("tasks/coordination/rate_limit.py", "tasks/broker/wakeup.py",
             "tasks/portal/limits.py", "tasks/coordination/worker_metrics.py")


def test_every_engine_is_listed_once_and_implements_the_whole_interface() -> None:
    kinds = [engine.kind for engine in STORES]
    assert len(set(kinds)) == len(kinds) == 3
    for engine in STORES:
        assert issubclass(engine, CoordinationStore)
        assert not inspect.isabstract(engine), f"{engine.__name__} leaves a primitive out"
    # The last resort takes any settings, so the chooser always finds one.
    assert STORES[-1].open(Where(redis_url=None, database=None)) is not None


def test_the_chooser_follows_the_settings() -> None:
    redis_broker = "redis://127.0.0.1:6399/0"
    cases = [
        (Settings(celery_broker_url=redis_broker), "redis"),
        (Settings(celery_broker_url=AMQP), "postgresql"),
        (Settings(celery_broker_url=AMQP, coordination_redis_url="redis://h:1/2"), "redis"),
        (Settings(celery_broker_url=None), "redis"),  # the workers' default broker
    ]
    for settings, kind in cases:
        assert choose_store(settings).kind == kind, settings
    # The relay's sign-in counters: an unset broker is no Redis.
    unset = Settings(celery_broker_url=None)
    assert choose_store(unset, unset_broker_is_redis=False).kind == "postgresql"
    assert coordination_redis_url(unset, unset_broker_is_redis=False) is None
    # Sharing nothing (tests): this process.
    assert choose_store(Settings(celery_broker_url=AMQP), database=False).kind == "process"


def _imports(path: Path) -> set[str]:
    """Every name `path` imports, as module.name (at any depth of its body)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def test_only_the_chooser_names_the_engines() -> None:
    namers = set()
    for path in sorted((ROOT / "tasks").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        imported = _imports(path)
        engine_classes = {f"{m}.{c.__name__}" for m in ENGINE_MODULES for c in STORES}
        if imported & engine_classes:
            namers.add(rel)
    assert namers == {"tasks/coordination/stores.py"}, namers


@pytest.mark.parametrize("rel", DECISIONS)
def test_the_decisions_never_ask_which_engine(rel: str) -> None:
    path = ROOT / rel
    imported = _imports(path)
    # Connection and Engine only as types: a store may use the caller's.
    drivers = {name for name in imported if _within(name, {"redis", "sqlalchemy", "psycopg"})
               and name not in ("sqlalchemy.Connection", "sqlalchemy.Engine")}
    assert not drivers, f"{rel} imports a driver: {drivers}"
    engines = {name for name in imported
               if _within(name, ENGINE_MODULES | {"db.coordination", "db.signin_limits"})}
    assert not engines, f"{rel} reaches an engine: {engines}"
    # No branch on an engine's name either.
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            names = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            assert not names & {"redis", "postgresql", "process"}, (rel, ast.unparse(node))


class _Journal(ProcessStore):
    """A new engine: kept in this process, chosen by a journal:// URL."""

    kind = "journal"

    @classmethod
    def open(cls, where: Where) -> _Journal | None:
        url = where.redis_url or ""
        return cls() if url.startswith("journal://") else None


def test_a_new_engine_is_one_class_in_the_list() -> None:
    from tasks.coordination.rate_limit import RateLimiter

    registry = (_Journal, *STORES)
    chosen = choose_store(redis_url="journal://here", registry=registry)
    assert isinstance(chosen, _Journal)
    # Every other setting still reaches the engines it did.
    assert choose_store(redis_url=None, database=False, registry=registry).kind == "process"
    # What is built on the interface takes it as it is.
    lim = RateLimiter("journal", 10, redis_url=None, store=chosen)
    assert lim.backend == "journal"
    assert lim.reserve_and_depart().departed is not None
    assert lim.reserve(math.inf).wait_s == pytest.approx(lim.interval, abs=0.05)
