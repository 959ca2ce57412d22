"""regnotify's Celery side: the app, tasks, providers, relay and CLI."""
