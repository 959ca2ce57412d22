"""The folder `regnotify up` keeps its state in: data, generated secrets, the env file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from tasks.exceptions import StateFolderBusy
from tasks.settings import UP_ENV_FILE


@dataclass(frozen=True)
class UpSecrets:
    """Credentials `up` made on its first run and reuses after."""

    relay_token: str
    flower_user: str
    flower_password: str
    #: Signs the portal's sessions and the tokens `regnotify dev-token` prints,
    #: so both outlive a restart and the relay's /api accepts them.
    session_secret: str = ""

    @property
    def flower_basic_auth(self) -> str:
        """FLOWER_BASIC_AUTH's user:password form."""
        return f"{self.flower_user}:{self.flower_password}"


class UpState:
    """Paths under the state folder (default `.regnotify/` in the current directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @property
    def lock_file(self) -> Path:
        """Locked by the `up` running in this folder; holds its pid for the message."""
        return self.root / "up.lock"

    def lock(self) -> None:
        """Hold this folder until unlock() or the process ends, or raise StateFolderBusy.

        flock, not a pid file: the kernel drops the lock when the process dies
        however it dies, so a crashed `up` never blocks the next one. The file
        stays (unlinking it would race a starting `up`); the fd is not
        inherited by the children.
        """
        if self._lock_fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateFolderBusy(
                f"regnotify up is already running in {self.root} (pid {holder}): use that "
                "one, stop it first, or pass --state-dir for a second stack") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        """Let the next `up` have the folder (after this one removed its up.env)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def postgres_dir(self) -> Path:
        """The embedded cluster's data directory.

        As root the server runs as `postgres`, which cannot enter a private
        folder such as /root: then the data lives under /var/lib/regnotify,
        at a path derived from the state folder so it is found again.
        """
        if os.geteuid() == 0 and not _reachable_by_others(self.root):
            digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
            return Path("/var/lib/regnotify") / digest / "postgres"
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        """The embedded Redis' append-only file lives here."""
        return self.root / "redis"

    @property
    def env_file(self) -> Path:
        """URLs and secrets of the running stack, read by other commands."""
        return self.root / Path(UP_ENV_FILE).name

    def ensure(self) -> None:
        """Create the folders; secrets and env files are created owner-only."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the postgres user must reach postgres/ when we are root
        parent = self.postgres_dir.parent
        if parent != self.root:
            parent.mkdir(parents=True, exist_ok=True)
            for folder in (parent, *parent.parents):
                if folder == Path("/"):
                    break
                folder.chmod(folder.stat().st_mode | 0o005)

    def secrets(self) -> UpSecrets:
        """Load the generated secrets, creating them on the first run."""
        path = self.root / "secrets.json"
        if path.exists():
            data = json.loads(path.read_text())
            kept = UpSecrets(data["relay_token"], data["flower_user"], data["flower_password"],
                             data.get("session_secret", ""))
            if kept.session_secret:
                return kept
            # A folder from before SESSION_SECRET was kept: add one, keep the rest.
            made = UpSecrets(kept.relay_token, kept.flower_user, kept.flower_password,
                             secrets.token_urlsafe(48))
        else:
            made = UpSecrets(secrets.token_urlsafe(32), "admin", secrets.token_urlsafe(12),
                             secrets.token_urlsafe(48))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode applies to a new file only
        with os.fdopen(fd, "w") as fh:
            json.dump(made.__dict__, fh)
        return made

    def write_env(self, values: dict[str, str]) -> None:
        """Publish the stack's settings for other commands in this folder."""
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            for key, value in values.items():
                fh.write(f"{key}={value}\n")

    def remove_env(self) -> None:
        """The stack is down: stop pointing other commands at it."""
        self.env_file.unlink(missing_ok=True)


def _reachable_by_others(path: Path) -> bool:
    """Whether every folder down to `path` can be entered by other users."""
    return all(
        folder.stat().st_mode & stat.S_IXOTH
        for folder in (path, *path.parents) if folder.exists()
    )
