"""regnotify's application side: the Celery app and its tasks, providers, relay and CLI.

`celery -A tasks worker` finds the app here.
"""

from tasks.celery_app import app
from tasks.log_hygiene import quiet_chatty_libraries

quiet_chatty_libraries()

__all__ = ["app"]
