"""Outside the connector (db/connector.py), no `except` in tasks/ or db/ names a driver's
exception class: edges catch members of the family (db/errors.py) instead.

The clauses once waiting to be converted were listed in
tests/connector_excepts_allowed.txt, one `path: dotted.Class` per clause; the list only
shrank, and is empty now: it stays so (no clause may appear again).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_FILE = Path(__file__).with_name("connector_excepts_allowed.txt")
#: The one module that may name them: it maps them.
CONNECTOR = "db/connector.py"
#: Top-level packages whose exception classes are a driver's.
DRIVERS = ("psycopg", "psycopg_pool", "sqlalchemy", "redis", "kombu", "amqp", "socket")


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as, at any depth of the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _caught(handler_type: ast.expr | None) -> list[str]:
    if handler_type is None:
        return []
    if isinstance(handler_type, ast.Tuple):
        return [name for element in handler_type.elts for name in _caught(element)]
    return [ast.unparse(handler_type)]


def driver_excepts(source: str) -> list[str]:
    """The dotted driver classes the `except` clauses of `source` name, one per naming."""
    tree = ast.parse(source)
    imported = _imported_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler):
            continue
        for written in _caught(node.type):
            head, _, rest = written.partition(".")
            dotted = imported.get(head, head) + (f".{rest}" if rest else "")
            if dotted.split(".")[0] in DRIVERS:
                found.append(dotted)
    return found


def _found() -> Counter[str]:
    found: Counter[str] = Counter()
    for package in ("tasks", "db"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == CONNECTOR:
                continue
            for dotted in driver_excepts(path.read_text()):
                found[f"{name}: {dotted}"] += 1
    return found


def _allowed() -> Counter[str]:
    lines = (line.split("#", 1)[0].strip() for line in ALLOWED_FILE.read_text().splitlines())
    return Counter(line for line in lines if line)


def test_the_walker_sees_driver_classes_however_imported():
    source = """
import psycopg
import sqlalchemy.exc
from redis import RedisError as Away
from kombu.exceptions import OperationalError
try:
    pass
except (psycopg.Error, sqlalchemy.exc.SQLAlchemyError):
    pass
except Away:
    pass
def f():
    from psycopg_pool import PoolTimeout
    try:
        pass
    except (PoolTimeout, OperationalError, ValueError):
        pass
"""
    assert sorted(driver_excepts(source)) == [
        "kombu.exceptions.OperationalError", "psycopg.Error", "psycopg_pool.PoolTimeout",
        "redis.RedisError", "sqlalchemy.exc.SQLAlchemyError"]


def test_no_driver_class_in_an_except_outside_the_connector():
    extra = _found() - _allowed()
    assert not extra, (
        "catch the family's member instead (wrap the call in db.connector.family_errors()):\n"
        + "\n".join(sorted(extra.elements())))


def test_the_allow_list_only_shrinks():
    gone = _allowed() - _found()
    assert not gone, (f"these clauses are gone: remove them from {ALLOWED_FILE.name}:\n"
                      + "\n".join(sorted(gone.elements())))


def test_the_allow_list_is_empty():
    left = sorted(_allowed().elements())
    assert not left, ("every clause is converted: none may be allowed again "
                      "(wrap the call in db.connector.family_errors() and catch the member):\n"
                      + "\n".join(left))
