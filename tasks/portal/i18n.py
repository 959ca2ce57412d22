"""The page's words (strings/<lang>.toml, one file per language) and its dates (Babel)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time
from markupsafe import Markup, escape

from db.vocabulary import LANGUAGES
from tasks.messages.catalog import DEFAULT_LANGUAGE

#: The page speaks every language messages go in (the database's list).
DEFAULT = DEFAULT_LANGUAGE
_STRINGS = Path(__file__).with_name("strings")


def strings_file(lang: str) -> Path:
    """Where a language's page strings live."""
    return _STRINGS / f"{lang}.toml"


@cache
def _table(lang: str) -> dict[str, Any]:
    path = strings_file(lang)
    if not path.is_file():
        raise LookupError(f"language {lang!r} is in the database's list but has no "
                          f"portal strings: add {path}")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def pick_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The switch (query, then its cookie) wins over the browser's Accept-Language."""
    for chosen in (query, cookie):
        if chosen in LANGUAGES:
            return chosen
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else DEFAULT


@dataclass(frozen=True)
class Words:
    """One language's strings and formats, handed to the templates as `w`."""

    lang: str

    def __call__(self, key: str, **values: Any) -> str:
        node: Any = _table(self.lang)
        for part in key.split("."):
            node = node[part]
        return str(node).format(**values) if values else str(node)

    def html(self, key: str, **values: Markup) -> Markup:
        """A sentence with markup in its place-holders (a link): the words escaped, the
        values as given, so a translation can put the link where its grammar wants it."""
        return Markup(escape(self(key))).format(**values)

    def stage(self, stage: str, fallback: str) -> str:
        return str(_table(self.lang).get("stages", {}).get(stage, fallback))

    def when(self, moment: datetime | None, zone: str | None) -> str:
        """A date and time in the customer's zone, the way their language writes it."""
        if moment is None:
            return ""
        try:
            tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo("UTC")
        local = moment.astimezone(tz)
        day = format_date(local, "medium", locale=self.lang)
        time = format_time(local, "short", tzinfo=tz, locale=self.lang)
        # The zone's own abbreviation (CST): Babel spells it -0600 in Spanish.
        return f"{day}, {time} {local.tzname()}"
