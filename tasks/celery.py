"""Where `celery -A tasks ...` finds the app (Celery looks for `<package>.celery`)."""

from tasks.broker.app import app

__all__ = ["app"]
