"""db/errors.py's docstring maps the error family: every name it gives must exist."""

from __future__ import annotations

import importlib
import re

import db.errors
from db.errors import RegnotifyError

#: Where the family's classes are defined: the database's members beside the
#: base (db/ cannot import tasks/), the application's in tasks.exceptions.
HOMES = ("db.errors", "tasks.exceptions")


def test_every_dotted_name_in_the_docstring_exists():
    doc = db.errors.__doc__ or ""
    named = re.findall(r"\b((?:db|tasks)(?:\.[a-z_]+)+)\.([A-Z]\w+)\b", doc)
    assert named, "the walker found no dotted names: the docstring changed shape"
    for module, name in named:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} does not exist"


def test_every_class_in_the_tree_is_in_the_family():
    doc = db.errors.__doc__ or ""
    tree = re.findall(r"(?:├──|└──)\s+(\w+)", doc)
    assert len(tree) >= 10
    modules = [importlib.import_module(m) for m in HOMES]
    for name in tree:
        found = [getattr(m, name) for m in modules if hasattr(m, name)]
        assert found, f"{name} is in the tree but in none of {HOMES}"
        assert issubclass(found[0], RegnotifyError), name
