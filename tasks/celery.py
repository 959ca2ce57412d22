"""Where `celery -A tasks ...` finds the app (Celery looks for `<package>.celery`)."""

from tasks.worker.app import app

__all__ = ["app"]
