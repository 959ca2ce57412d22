"""regnotify's application package: one folder per role.

- `worker/`: every task the worker runs.
- `broker/`: the Celery app (`broker/app.py`; `celery -A tasks worker` finds it
  through `tasks/celery.py`) and every way a task is published.
- `sending/`: the send path: one delivery, an e-mail batch, a staff digest,
  the one fail/retry/park decision, fallback, the call bound and the lease.
- `maintenance/`: the queue run's jobs (claim, quiet-hour holds, sweep,
  unpark, digests, next due), one module each.
- `coordination/`: the state every worker shares (Redis, PostgreSQL or in
  process behind one store interface), the rate limiter and the workers'
  counters on top.
- `messages/`: the words and layout of every message (catalogs, templates,
  rendering, SMS segments).
- `providers/`: Twilio, Resend and console adapters.
- `auth/`: verifying tokens (JWKS, HS256, the relay's own).
- `relay/`, `portal/`, `staff/`: the ASGI app, the customer page, the staff console.
- `cli/`: `regnotify` and its subcommands; `local/`: the stack `regnotify up` runs.

Loose at the top: `settings`, `exceptions` (the error family), `database` (the
process's engine), `masking` and `log_hygiene`.
"""
