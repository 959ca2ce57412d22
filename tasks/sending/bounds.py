"""The worst-case bounds of the send path, written once: one call, and a claim's lease.

Every lease (a delivery, an e-mail batch, a staff digest, the queue run's
claim of digests) and every gate's hold on a call's place derive from these,
so a longer PROVIDER_TIMEOUT_S can never leave one of them shorter than the
call it covers.
"""

from __future__ import annotations

from tasks.settings import Settings


def call_bound_s(settings: Settings) -> float:
    """The longest one provider call can take: PROVIDER_TIMEOUT_S bounds the
    connect and the read each (both adapters pass it as both), so twice it."""
    return settings.provider_timeout_s * 2


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds its rows: a lookup and a send, each at its worst, and a margin."""
    return call_bound_s(settings) * 2 + 15
