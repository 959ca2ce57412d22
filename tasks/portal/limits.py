"""The sign-in limits regnotify keeps, in the coordination store every relay shares.

Counters live where the workers' rate limits live, in the coordination
store (tasks.coordination.stores chooses: the coordination Redis, else
PostgreSQL), each a sliding window: a gate without hold. So replicas count
together and a restart forgets nothing. If the store does not answer, a
store in this process keeps the relay careful until it does. Keys hold a
keyed hash of the number or address, never the number itself.

The client's address is the TCP peer, or, when the peer is a trusted proxy
(FORWARDED_ALLOW_IPS), the last address in X-Forwarded-For that is not one
(with `*`, the last address: the only one a proxy surely wrote).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import Engine

from tasks.coordination.store import CoordinationStore, Gate, StoreUnavailable
from tasks.coordination.stores import choose_store, fallback_store
from tasks.settings import Settings

log = logging.getLogger(__name__)

#: A code lives this long (the console's own codes).
CODE_TTL_S = 600
#: Checks of a number's codes within CODE_TTL_S: a resend does not start
#: the count again (only a good code does), so a new code buys no guesses.
CHECKS_PER_CODE = 5
CHECKS_WINDOW_S = CODE_TTL_S
#: Sends per number, and per client IP, in a sliding window.
SENDS_PER_NUMBER = 3
SENDS_PER_NUMBER_WINDOW_S = 600
SENDS_PER_IP = 10
SENDS_PER_IP_WINDOW_S = 3600
#: Entries kept per kind in this process (the portal's own code cache).
MAX_KEYS = 50_000


class SigninCounters:
    """Sliding-window counters shared by every relay (the coordination store).

    The store is chosen as the workers' is, except that an unset broker
    means PostgreSQL (the relay always has it) rather than a Redis on the
    default port that may not be there, or be someone else's. `store`: one
    to use instead (tests).
    """

    def __init__(self, settings: Settings, engine: Callable[[], Engine], salt: bytes, *,
                 store: CoordinationStore | None = None) -> None:
        self._salt = salt
        self._store = store or choose_store(settings, database=engine,
                                            unset_broker_is_redis=False)
        self._fallback = fallback_store()
        self._warned = False

    @property
    def backend(self) -> str:
        return self._store.kind

    def key(self, kind: str, value: str) -> str:
        digest = hmac.new(self._salt, f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()
        return f"regnotify:signin:{kind}:{digest[:32]}"

    def hit(self, kind: str, value: str, limit: int, window_s: float) -> bool:
        """Count one event for (kind, value) unless the window is full (then False)."""
        key, window = self.key(kind, value), Gate(limit, window_s)
        token = uuid.uuid4().hex
        try:
            wait = self._store.gate_depart(key, window, token)
            self._warned = False
        except StoreUnavailable as exc:
            self._warn(exc)
            wait = self._fallback.gate_depart(key, window, token)
        return wait <= 0

    def clear(self, kind: str, value: str) -> None:
        key = self.key(kind, value)
        self._fallback.forget(key)
        try:
            self._store.forget(key)
        except StoreUnavailable as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("portal: sign-in counters' %s store unavailable (%s); counting in this "
                        "process until it answers", self.backend,
                        type(exc.__cause__ or exc).__name__)
            self._warned = True


# ── The client's address ─────────────────────────────────────────────────────

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(spec: str) -> list[Network] | None:
    """FORWARDED_ALLOW_IPS as networks; None means '*' (every peer is a proxy)."""
    nets: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item == "*":
            return None
        nets.append(ipaddress.ip_network(item, strict=False))
    return nets


def _trusted(address: str, nets: list[Network] | None) -> bool:
    if nets is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(peer: str | None, forwarded_for: str | None,
                   nets: list[Network] | None) -> str:
    """The customer's address: the peer, unless a trusted proxy says whom it forwards.

    X-Forwarded-For is read right to left, each trusted proxy appending the
    address it got the request from; the first untrusted one is the client (a
    client's own X-Forwarded-For values sit further left and are ignored).
    """
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(peer, nets):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if not hops:
        return peer
    if nets is None:
        # '*': every peer is taken for a proxy, so the one address a proxy
        # surely wrote is the last; anything left of it the client may have.
        return hops[-1]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            return hop
    return hops[0]
