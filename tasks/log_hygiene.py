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
