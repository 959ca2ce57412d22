"""Data access for regnotify: engine, migrations, queue and delivery queries, the error base.

`db` never imports `tasks`; the SQL it runs lives in `sql/`.
"""
