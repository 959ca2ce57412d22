"""Fake Twilio and Resend servers ("wires") for tests, benchmarks and manual runs.

Each wire is a real HTTP server in a background thread that the real
``twilio`` / ``resend`` SDKs talk to unmodified, with a ledger of accepted
sends and fault injection (latency, errors, 429s, timeouts after accepting,
dropped connections, per-recipient scripts). Typical use::

    with TwilioWire() as sms, ResendWire() as mail:
        client = sms.client(timeout=5)          # or point your own Client at sms.url
        with mail.sdk():                         # sets resend.api_url/api_key, restores after
            ...
        sms.wait_for_sends(1)
        assert sms.accepted_count("+15551234567") == 1
        assert not mail.duplicates()

Other processes drive a wire over HTTP under ``/_wire/`` (see ``RemoteWire``);
``python -m tests.wire twilio|resend --port P`` runs one in the foreground.
"""

from ._core import (
    ACCEPTED,
    ACCEPTED_DROPPED,
    ACCEPTED_TIMEOUT,
    ANY_RECIPIENT,
    BAD_REQUEST,
    CONTROL_PREFIX,
    DROPPED,
    IDEMPOTENCY_CONFLICT,
    INTERNAL_ERROR,
    NOT_FOUND,
    RATE_LIMITED,
    READ,
    REJECTED,
    REPLAYED,
    SERVER_ERROR,
    UNAUTHORIZED,
    AcceptedSend,
    Attempt,
    ChaosConfig,
    Step,
    WireServer,
    is_accept_outcome,
)
from .remote import RemoteWire, WireControlError
from .resend_wire import (
    INVALID_DOMAIN,
    RESEND_ERRORS,
    RESEND_TEST_ADDRESSES,
    ResendSdkState,
    ResendWire,
)
from .twilio_wire import TWILIO_MAGIC_FROM, TWILIO_MAGIC_TO, TwilioWire

__all__ = [
    "ACCEPTED",
    "ACCEPTED_DROPPED",
    "ACCEPTED_TIMEOUT",
    "ANY_RECIPIENT",
    "BAD_REQUEST",
    "CONTROL_PREFIX",
    "DROPPED",
    "IDEMPOTENCY_CONFLICT",
    "INTERNAL_ERROR",
    "INVALID_DOMAIN",
    "NOT_FOUND",
    "RATE_LIMITED",
    "READ",
    "REJECTED",
    "REPLAYED",
    "RESEND_ERRORS",
    "RESEND_TEST_ADDRESSES",
    "SERVER_ERROR",
    "TWILIO_MAGIC_FROM",
    "TWILIO_MAGIC_TO",
    "UNAUTHORIZED",
    "AcceptedSend",
    "Attempt",
    "ChaosConfig",
    "RemoteWire",
    "ResendSdkState",
    "ResendWire",
    "Step",
    "TwilioWire",
    "WireControlError",
    "WireServer",
    "is_accept_outcome",
]
