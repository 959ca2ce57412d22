"""The words of every message, one TOML file per language (tasks/messages/templates/messages/).

The layout (where the greeting, the link and the opt-out line go) stays in
the jinja templates beside them; a translator edits only the language files.
Which languages there are is the database's list (notification_languages),
read from its generated copy db.vocabulary: a new language is a row in a
migration plus its files here and in tasks/portal/strings/.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from db.vocabulary import LANGUAGES

MESSAGES_DIR = Path(__file__).with_name("templates") / "messages"
#: The language every other is checked against, and the one a message falls
#: back to (the database's default for notification_config.default_language).
DEFAULT_LANGUAGE = "en"


class Catalog:
    """One language's texts, looked up by dotted key (`sms.opt_out`, `stages.x.headline`)."""

    def __init__(self, language: str, data: dict[str, Any]) -> None:
        self.language = language
        self._data = data

    def text(self, key: str) -> str:
        node: Any = self._data
        for part in key.split("."):
            node = node[part]
        if not isinstance(node, str):
            raise KeyError(key)
        return node

    def stage_key(self, stage: str) -> str:
        """The catalog entry for a stage: its own, or `default` for stages added as data."""
        return stage if stage in self._data["stages"] else "default"

    def text_keys(self) -> set[str]:
        """Every dotted key that holds a text (the test compares the languages by it)."""
        found: set[str] = set()

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for name, child in node.items():
                    walk(f"{prefix}{name}.", child)
            else:
                found.add(prefix[:-1])

        walk("", self._data)
        return found


def resolve_language(language: str | None) -> str:
    """A supported language; anything else (NULL included) is the default."""
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def catalog_file(language: str) -> Path:
    """Where a language's message texts live."""
    return MESSAGES_DIR / f"{language}.toml"


@cache
def catalog(language: str) -> Catalog:
    language = resolve_language(language)
    path = catalog_file(language)
    if not path.is_file():
        raise LookupError(f"language {language!r} is in the database's list but has no "
                          f"message catalog: add {path}")
    with path.open("rb") as fh:
        return Catalog(language, tomllib.load(fh))
