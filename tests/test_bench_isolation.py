"""`regnotify bench` uses only the stack it starts, whatever the user's environment says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_isolation_drops_the_users_settings_and_ignores_env_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.stack import IGNORE_ENV_FILES, isolate_environment
    from tasks.settings import get_settings

    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://users-own@db.example/prod\n"
                                   "COORDINATION_REDIS_URL=redis://users-own:6379/1\n")
    monkeypatch.chdir(tmp_path)
    environ = dict(os.environ)
    environ.update({"CELERY_BROKER_URL": "amqp://user@rabbit.example//",
                    "DATABASE_URL": "postgresql://user@db.example/prod",
                    "CELERY_RESULT_BACKEND": "redis://elsewhere", "RESEND_RATE_PER_S": "7",
                    "PATH": os.environ.get("PATH", "")})
    monkeypatch.setattr(os, "environ", environ)
    try:
        get_settings.cache_clear()
        assert get_settings().database_url == "postgresql://user@db.example/prod"
        isolate_environment()
        for key in ("CELERY_BROKER_URL", "DATABASE_URL", "CELERY_RESULT_BACKEND",
                    "RESEND_RATE_PER_S"):
            assert key not in os.environ
        assert os.environ[IGNORE_ENV_FILES] == "1" and os.environ["PATH"]
        settings = get_settings()
        # Neither the environment nor the .env in the folder reach the bench.
        assert settings.database_url is None and settings.celery_broker_url is None
        assert settings.coordination_redis_url is None
        assert settings.resend_rate_per_s == 2.0
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
