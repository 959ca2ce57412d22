"""Named SQL queries loaded from `sql/queries/*.sql`, procrastinate-style.

A file holds one or more queries, each introduced by a `-- name: NAME` line;
lines up to the next marker are its text. Parameters use psycopg's
`%(name)s` style.
"""

from __future__ import annotations

import re
from functools import cache

from db.sql_files import queries_dir

_MARKER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split one file's text into {name: sql}."""
    found: dict[str, str] = {}
    parts = _MARKER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        found[name] = body.strip().rstrip(";")
    return found


@cache
def all_queries() -> dict[str, str]:
    """Every named query of every file under `sql/queries/`."""
    merged: dict[str, str] = {}
    for path in sorted(queries_dir().glob("*.sql")):
        for name, body in parse_queries(path.read_text(encoding="utf-8")).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined twice (again in {path.name})")
            merged[name] = body
    return merged


def query(name: str) -> str:
    """Return the SQL text of one named query."""
    try:
        return all_queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} under {queries_dir()}") from None
