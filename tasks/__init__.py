"""regnotify's application package: one folder per role.

- `worker/`: the Celery app (`worker/app.py`) and every task; `celery -A tasks
  worker` finds the app through `tasks/celery.py`.
- `sending/`: the send path: one delivery, an e-mail batch, fallback, quiet hours.
- `maintenance/`: the queue run's jobs (claim, holds, sweep, unpark, digests,
  wake-up), one module each.
- `coordination/`: the state every worker shares (Redis, PostgreSQL or in
  process behind one store interface) and the rate limiter on top.
- `messages/`: the words and layout of every message (catalogs, templates,
  rendering, SMS segments).
- `providers/`: Twilio, Resend and console adapters.
- `auth/`: verifying tokens (JWKS, HS256, the relay's own).
- `relay/`, `portal/`, `staff/`: the ASGI app, the customer page, the staff console.
- `cli/`: `regnotify` and its subcommands; `local/`: the stack `regnotify up` runs.

Loose at the top: `settings`, `exceptions` (the error family), `database` (the
process's engine), `masking` and `log_hygiene`.
"""
