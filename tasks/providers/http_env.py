"""Reading the HTTP environment (proxies, CA bundle) once per session instead of per request.

With `trust_env` on, requests re-reads every proxy variable and matches the
host against NO_PROXY on each request: about 80 µs, twice per send, which
profiling of a busy worker showed as a few per cent of its CPU. The
environment does not change while a worker runs, so each session resolves
it once, for the one host it talks to, and then stops looking.
"""

from __future__ import annotations

import os

import requests
from requests.utils import get_environ_proxies


def pin_environment(session: requests.Session, url: str) -> dict[str, str]:
    """Give `session` the proxies and CA bundle the environment sets for `url`, resolved now.

    Returns the proxies, for clients that pass them per request.
    """
    proxies = get_environ_proxies(url)
    session.trust_env = False
    session.proxies.update(proxies)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return proxies
