"""Data access for regnotify: engine, migrations, queue and delivery queries.

`db` never imports `tasks`; the SQL it runs lives in `sql/`.
"""
