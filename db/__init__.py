"""Data access for regnotify: engine, migrations, queue, delivery, hold, fallback, coordination
and retention queries, the error base.

`db` never imports `tasks`; the SQL it runs lives in `sql/`.
"""
