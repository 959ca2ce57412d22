"""Keep customers' numbers and credentials out of logs, even at DEBUG.

urllib3 logs every request line at DEBUG, and Twilio puts the recipient's
number in the query string of the Messages list; the twilio SDK logs request
bodies at INFO. Neither is useful enough to be worth a leaked phone number.
"""

from __future__ import annotations

import logging

_QUIET = ("urllib3", "urllib3.connectionpool", "twilio.http_client", "requests")


def quiet_chatty_libraries() -> None:
    """Raise the chatty HTTP libraries' loggers to WARNING."""
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


#: Celery's loggers of the two lines it writes at INFO for every task it runs
#: ("Task ... received", "Task ... succeeded in ...").
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_per_task_lines(loglevel: str) -> None:
    """At INFO, leave out Celery's two lines per task; failures are still logged.

    A send is a task, so at INFO they were most of a busy worker's log and a
    few per cent of its CPU; Flower shows every task, and `-l debug` shows
    the lines again. Celery looks at these loggers' level once, when the
    worker builds its task strategies, so this runs before the worker starts.
    """
    if loglevel.strip().upper() == "INFO":
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
