"""The environment `regnotify up` gives the worker, the relay and Flower, and up.env.

Built once, from the settings, what `up` started and the secrets it keeps;
the children read everything from it (nothing is passed on a command line,
where `ps` would show a password to every user of the machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tasks.local.up_state import UpSecrets
from tasks.settings import Settings

#: Set in the children's environment: `regnotify worker` run by `up`.
UP_CHILD_ENV = "REGNOTIFY_UNDER_UP"

#: What up.env holds for the commands run beside `up` (`regnotify demo` ...).
UP_ENV_KEYS = ("DATABASE_URL", "CELERY_BROKER_URL", "RELAY_TOKEN", "FLOWER_BASIC_AUTH",
               "PORTAL_URL", "SESSION_SECRET")


@dataclass(frozen=True)
class StackSecrets:
    """The credentials the stack runs with: the settings' own, else the ones `up` made."""

    relay_token: str
    flower_basic_auth: str
    session_secret: str
    #: Where the Flower login can be found again (for the banner).
    flower_login_kept_in: str

    @classmethod
    def choose(cls, settings: Settings, made: UpSecrets, state_root: Path) -> StackSecrets:
        """Each secret from the settings when set there, else the one kept in the state folder."""
        relay_token = (settings.relay_token.get_secret_value() if settings.relay_token
                       else made.relay_token)
        flower_auth = (settings.flower_basic_auth.get_secret_value()
                       if settings.flower_basic_auth else made.flower_basic_auth)
        # Kept like Flower's password: portal sessions survive a restart, and the
        # relay's /api accepts what the portal and `regnotify dev-token` sign.
        session_secret = (settings.session_secret.get_secret_value() if settings.session_secret
                          else made.session_secret)
        kept_in = ("FLOWER_BASIC_AUTH in .env or the environment" if settings.flower_basic_auth
                   else str(state_root / "secrets.json"))
        return cls(relay_token, flower_auth, session_secret, kept_in)


def child_environment(settings: Settings, secrets: StackSecrets, *, database_url: str,
                      broker: str, relay_port: int, concurrency: int) -> dict[str, str]:
    """This process's environment plus what every child of `up` needs."""
    # Flower reads FLOWER_BASIC_AUTH from here: on its command line the
    # password would show in `ps` to every user of the machine.
    return {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker,
            "RELAY_TOKEN": secrets.relay_token, "FLOWER_BASIC_AUTH": secrets.flower_basic_auth,
            "SESSION_SECRET": secrets.session_secret,
            "PORTAL_URL": settings.portal_url or f"http://127.0.0.1:{relay_port}/portal",
            "PYTHONUNBUFFERED": "1", UP_CHILD_ENV: "1",
            # The worker's pool follows its threads (tasks/worker/worker_budget.py);
            # the setting says the same, for anything that reads it.
            "WORKER_CONCURRENCY": str(concurrency)}


def up_env(env: dict[str, str]) -> dict[str, str]:
    """The part of the children's environment up.env keeps."""
    return {key: env[key] for key in UP_ENV_KEYS}
