"""regnotify's application side: the Celery app and its tasks, providers, relay and CLI.

`celery -A tasks worker` finds the app here.
"""

from tasks.celery_app import app

__all__ = ["app"]
