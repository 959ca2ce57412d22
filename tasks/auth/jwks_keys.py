"""Supabase's signing keys (JWKS), fetched so an outage or made-up key ids cannot tie up the relay.

PyJWT's PyJWKClient does the fetching and parsing; this wrapper decides
when it may fetch. PyJWKClient alone starts its refetch cooldown only after
a successful fetch and holds one lock across the fetch, so while the
endpoint hangs every token with an invented `kid` waits its full timeout
behind the others. Here:

- at most one fetch is in flight, on a thread of its own;
- every fetch, failed or not, starts the cooldown before the next one that
  an unknown `kid` may cause;
- only the request that started a fetch waits for it, and briefly (its
  whole timeout only while no key was ever fetched); a request that finds a
  fetch in flight or the cooldown running is refused at once;
- a known key past its lifespan is still used while a fresh set is fetched
  in the background (Supabase's edge caches the set for as long anyway).
"""

from __future__ import annotations

import logging
import threading
import time

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientError

log = logging.getLogger(__name__)

#: The longest a request waits for a fetch it started once keys are known:
#: a rotated key published a moment ago is still found, and a hanging
#: endpoint costs one request this much, never a thread's full timeout.
WARM_WAIT_S = 0.25


class JwksKeys:
    """The key set of one JWKS URL, refreshed by one fetch at a time."""

    def __init__(self, url: str, *, lifespan_s: float, timeout_s: float,
                 cooldown_s: float) -> None:
        # No cache inside PyJWKClient: this class keeps the keys and the clock.
        self._client = PyJWKClient(url, cache_jwk_set=False, cache_keys=False,
                                   timeout=timeout_s)
        self.url = url
        self.lifespan_s = lifespan_s
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._next_fetch_at = 0.0  # an unknown kid fetches no sooner
        self._in_flight: threading.Event | None = None
        self._lock = threading.Lock()
        #: Fetches started (successful or not); the tests read it.
        self.fetches = 0

    def signing_key(self, kid: str | None) -> PyJWK:
        """The key for `kid`; PyJWKClientError when there is none (now)."""
        now = time.monotonic()
        with self._lock:
            key = self._keys.get(kid) if kid else None
            stale = self._fetched_at is None or now - self._fetched_at >= self.lifespan_s
            if key is not None:
                if stale and self._in_flight is None and now >= self._next_fetch_at:
                    self._start_locked(now)  # refresh behind a key still in use
                return key
            if not kid:
                raise PyJWKClientError("token has no kid")
            if self._in_flight is not None or now < self._next_fetch_at:
                raise PyJWKClientError(f"no key {kid!r} (JWKS fetched recently or in flight)")
            done = self._start_locked(now)
            cold = not self._keys
        done.wait(self.timeout_s + 1 if cold else WARM_WAIT_S)
        with self._lock:
            key = self._keys.get(kid)
        if key is None:
            raise PyJWKClientError(f"no key {kid!r} in the JWKS")
        return key

    def _start_locked(self, now: float) -> threading.Event:
        done = threading.Event()
        self._in_flight = done
        self._next_fetch_at = now + self.cooldown_s
        self.fetches += 1
        threading.Thread(target=self._fetch, args=(done,), name="jwks-fetch",
                         daemon=True).start()
        return done

    def _fetch(self, done: threading.Event) -> None:
        keys: dict[str, PyJWK] | None = None
        try:
            keys = {k.key_id: k for k in self._client.get_signing_keys(refresh=True)
                    if k.key_id}
        except PyJWKClientError as exc:
            # The cooldown runs from the failure too: an outage is asked about
            # once per cooldown, not once per token.
            log.warning("JWKS fetch from %s failed (%s); next try in %.0f s at the earliest",
                        self.url, type(exc).__name__, self.cooldown_s)
        except Exception:  # a fetch thread must always end its flight
            log.exception("JWKS fetch from %s failed", self.url)
        finally:
            with self._lock:
                if keys is not None:
                    self._keys = keys
                    self._fetched_at = time.monotonic()
                # The cooldown counts from the end of the fetch, failed or not.
                self._next_fetch_at = max(self._next_fetch_at,
                                          time.monotonic() + self.cooldown_s)
                self._in_flight = None
            done.set()
