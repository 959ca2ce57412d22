"""regnotify's application side: the Celery app, its tasks and their plumbing.

Top-level modules are the app (`celery_app`), the tasks (`queue_tick`,
`send_sms`, `send_email` with `send_email_batch`) and what they run on
(settings, engine, coordination and wake-up keys, the send flow for one
delivery and for an e-mail batch, dispatch, quiet hours, channel fallback,
rate limits, metrics, rendering, masking, exceptions). Subpackages:
`providers` (Twilio, Resend, console), `relay` (the ASGI app), `commands`
(the CLI's subcommands; `cli` is the entry point) and `local` (the stack
`regnotify up` starts). `celery -A tasks worker` finds the app here.
"""

from tasks.celery_app import app
from tasks.log_hygiene import quiet_chatty_libraries

quiet_chatty_libraries()

__all__ = ["app"]
