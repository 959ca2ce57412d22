"""SMS through the official `twilio` SDK."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import _basic_auth_str
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3 import HTTPConnectionPool
from urllib3.util import Retry, Timeout

from tasks.exceptions import ProviderConfigError
from tasks.providers.base import ProviderError, Sms, parse_retry_after
from tasks.providers.http_env import pin_environment
from tasks.settings import Settings

# The SDK logs every request at INFO, including the body and our numbers.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

#: Errors that will not change on retry: bad or unreachable numbers, a
#: recipient who replied STOP, a sender that cannot send there, bad credentials.
PERMANENT_CODES = frozenset({21211, 21408, 21606, 21610, 21612, 21614, 20003, 21212, 21617, 21602})
OPT_OUT_CODE = 21610
#: Messages a maybe-sent lookup reads: the newest to one customer, one page.
LOOKUP_PAGE = 50
#: Where the SDK sends Messages requests unless TWILIO_API_BASE_URL says otherwise.
TWILIO_API_URL = "https://api.twilio.com"
_FORM = "application/x-www-form-urlencoded"
#: requests' HTTPAdapter default: never retry, and raise a read error as it is.
_NO_RETRIES = Retry(0, read=False)


class _HeaderKeepingHttpClient(TwilioHttpClient):
    """Keeps the last response's headers (TwilioRestException drops Retry-After), and
    sends a form POST (creating a message) on the session's own urllib3 pool.

    requests' Session and HTTPAdapter merge the session's cookies, headers,
    auth and environment into every request, parse the URL again, look the
    connection pool up again and wrap the answer: a third of a text's HTTP
    CPU. Our session's environment is pinned (pin_environment) and Twilio
    sets no cookies, so a POST goes straight to the pool the adapter chose
    for that URL the first time (the same pool, TLS settings and keep-alive
    connections requests uses), with the Basic credentials encoded once.
    Anything else (a lookup with query parameters, a proxy, a session
    holding cookies) goes the SDK's own way.
    """

    last_headers: dict[str, str]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._targets: dict[str, tuple[HTTPConnectionPool, str]] = {}
        self._basic: dict[tuple[str, str], str] = {}

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        self.last_headers = {}
        if (method.upper() == "POST" and not params and self.session is not None
                and not self.session.cookies and not self.proxy
                and (headers or {}).get("Content-Type", _FORM) == _FORM):
            response = self._post_form(url, data or {}, headers or {}, auth, timeout)
        else:
            response = super().request(method, url, params=params, data=data, headers=headers,
                                       auth=auth, timeout=timeout,
                                       allow_redirects=allow_redirects)
        self.last_headers = {k.lower(): v for k, v in dict(response.headers or {}).items()}
        return response

    def _post_form(self, url: str, data: dict[str, object], headers: dict[str, str],
                   auth: tuple[str, str] | None, timeout: float | None) -> Response:
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(timeout)
        # The SDK formats every line before the logger drops it (we keep it at WARNING).
        chatty = self.logger.isEnabledFor(logging.INFO)
        if chatty:
            self.log_request({"method": "POST", "url": url, "params": None, "headers": headers,
                              "auth": auth, "data": data})
        self._test_only_last_response = None
        body = urlencode(data, doseq=True).encode("utf-8")
        sent = dict(self._session_headers())
        sent.update({k: v for k, v in headers.items() if v is not None})
        sent["Content-Type"] = _FORM
        sent["Content-Length"] = str(len(body))
        if auth is not None:
            sent["Authorization"] = self._authorization(auth)
        # What HTTPAdapter.send passes, without its wrapping: no retries (a
        # retried POST could create a second message), no redirects.
        pool, target = self._target(url)
        answer = pool.urlopen(
            "POST", target, body=body, headers=sent, redirect=False, assert_same_host=False,
            retries=_NO_RETRIES, timeout=Timeout(connect=timeout, read=timeout),
            preload_content=True, decode_content=True,
        )
        response = Response(int(answer.status), answer.data.decode("utf-8", errors="replace"),
                            dict(answer.headers))
        if chatty:
            self.log_response(response.status_code, response)
        self._test_only_last_response = response
        return response

    def _session_headers(self) -> dict[str, str]:
        assert self.session is not None
        return {k: v for k, v in self.session.headers.items() if v is not None}

    def _target(self, url: str) -> tuple[HTTPConnectionPool, str]:
        """The adapter's pool for `url` and the request target, resolved once per URL.

        Held here for good: urllib3 2 never closes a pool its manager lets go
        (it keeps ten hosts; this session talks to one), it only forgets it.
        """
        found = self._targets.get(url)
        if found is None:
            assert self.session is not None
            probe = requests.PreparedRequest()
            probe.prepare(method="POST", url=url)
            adapter = self.session.get_adapter(str(probe.url))
            assert isinstance(adapter, HTTPAdapter)
            pool = adapter.get_connection_with_tls_context(
                probe, self.session.verify, proxies=None, cert=self.session.cert)
            found = self._targets[url] = (pool, probe.path_url)
        return found

    def _authorization(self, auth: tuple[str, str]) -> str:
        value = self._basic.get(auth)
        if value is None:
            value = self._basic[auth] = _basic_auth_str(*auth)
        return value


class TwilioSms:
    """Twilio's Messages API; one SDK client per thread (its HTTP session is not shared)."""

    name = "twilio"

    def __init__(self, settings: Settings) -> None:
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ProviderConfigError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not (settings.twilio_from_number or settings.twilio_messaging_service_sid):
            raise ProviderConfigError(
                "Twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        self._sid = settings.twilio_account_sid
        self._token = settings.twilio_auth_token.get_secret_value()
        self._from = settings.twilio_from_number
        self._service = settings.twilio_messaging_service_sid
        self._base_url = settings.twilio_api_base_url
        self._timeout = settings.provider_timeout_s
        self._local = threading.local()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            http = _HeaderKeepingHttpClient(timeout=self._timeout)
            if http.session is not None:
                http.proxy = pin_environment(http.session, self._base_url or TWILIO_API_URL)
            # An empty environment: the SDK would otherwise read TWILIO_EDGE /
            # TWILIO_REGION from os.environ and rewrite our base URL.
            client = Client(self._sid, self._token, http_client=http, environment={"_": ""})
            client.edge = None
            client.region = None
            if self._base_url:
                client.api.base_url = self._base_url
            self._local.client = client
            self._local.http = http
        return client

    def _sender(self) -> dict[str, str]:
        if self._service:
            return {"messaging_service_sid": self._service}
        assert self._from is not None
        return {"from_": self._from}

    def send(self, sms: Sms) -> str:
        """Create the message; return its SM sid."""
        extra: dict[str, Any] = {}
        if sms.status_callback:
            extra["status_callback"] = sms.status_callback
        try:
            message = self._client().messages.create(
                to=sms.to, body=sms.body, **self._sender(), **extra
            )
        except TwilioRestException as exc:
            raise self._classify(exc) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, TwilioException,
                OSError) as exc:
            # The request may have reached Twilio before the connection broke.
            raise ProviderError(
                "network", _describe(exc), transient=True, outcome_unknown=True
            ) from exc
        return str(message.sid)

    def find_sent(self, sms: Sms, since: datetime,
                  recorded: Callable[[str], bool] | None = None) -> str | None:
        """Look for our message among the newest ones to this number since the earlier attempt.

        No DateSent filter: a message Twilio accepted but still holds in its
        queue (a number's rate, a carrier backlog) has no DateSent yet, and
        the filter would hide exactly the message we must not send twice.
        The newest LOOKUP_PAGE messages to one customer reach far past any
        retry window; DateCreated bounds the match instead, so an identical
        text from an earlier burst (A->B->A) is not mistaken for this one.
        A later burst's identical text can stand in the window too: a message
        another delivery records is never ours, and of the rest the one
        created nearest our attempt is.
        """
        filters: dict[str, Any] = {"to": sms.to}
        if self._from and not self._service:
            filters["from_"] = self._from
        # Clocks differ: look a little before our own record of the attempt.
        earliest = since - timedelta(minutes=5)
        candidates: list[tuple[timedelta, str]] = []
        try:
            for message in self._client().messages.list(
                limit=LOOKUP_PAGE, page_size=LOOKUP_PAGE, **filters
            ):
                created = message.date_created
                if created is not None and created < earliest:
                    continue
                if message.body != sms.body:
                    continue
                sid = str(message.sid)
                if recorded is not None and recorded(sid):
                    continue
                candidates.append((abs(created - since) if created else timedelta(0), sid))
        except TwilioRestException as exc:
            raise self._classify(exc, lookup=True) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, TwilioException,
                OSError) as exc:
            raise ProviderError(
                "network", _describe(exc), transient=True, outcome_unknown=True
            ) from exc
        return min(candidates)[1] if candidates else None

    def _classify(self, exc: TwilioRestException, *, lookup: bool = False) -> ProviderError:
        code = int(exc.code) if exc.code else None
        status = int(exc.status or 0)
        text = str(exc.msg or "")
        label = str(code if code is not None else f"http_{status}")
        headers: dict[str, str] = getattr(self._local, "http", None).last_headers or {}
        if status == 429 or code == 20429:
            return ProviderError(
                label, text, transient=True, outcome_unknown=lookup,
                retry_after=parse_retry_after(headers.get("retry-after")),
                rate_limited=True,
            )
        if status >= 500:
            return ProviderError(label, text, transient=True, outcome_unknown=True)
        if code in PERMANENT_CODES or 400 <= status < 500:
            return ProviderError(label, text, transient=False, opt_out=code == OPT_OUT_CODE)
        return ProviderError(label, text, transient=True, outcome_unknown=True)


def _describe(exc: BaseException) -> str:
    """A one-line description without URLs' credentials (requests puts none there)."""
    return f"{type(exc).__name__}: {exc}"[:500]
