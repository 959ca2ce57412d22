"""Keep customers' numbers and credentials out of logs, even at DEBUG.

urllib3 logs every request line at DEBUG, and Twilio puts the recipient's
number in the query string of the Messages list; the twilio SDK logs request
bodies at INFO. Neither is useful enough to be worth a leaked phone number.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

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


class DropQueryStrings(logging.Filter):
    """uvicorn's access lines without query strings, for every path.

    The staff console searches by GET (/staff?q=+17135550101) and the pages
    carry filters and cursors in the address: the access log keeps the path,
    method and status, never what was searched for.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, full path, HTTP version, status).
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def relay_log_config() -> dict[str, Any]:
    """uvicorn's logging config with DropQueryStrings on its access logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_query_strings"] = {
        "()": "tasks.log_hygiene.DropQueryStrings"}
    config["loggers"]["uvicorn.access"]["filters"] = ["no_query_strings"]
    return config
