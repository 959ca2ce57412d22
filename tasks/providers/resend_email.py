"""E-mail through the official `resend` SDK."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests
import resend
from resend.exceptions import ResendError
from resend.http_client import HTTPClient

from tasks.exceptions import ProviderConfigError
from tasks.providers.base import BatchResult, Email, ProviderError, parse_retry_after
from tasks.providers.http_env import pin_environment
from tasks.settings import Settings

#: 409s that mean "the first request with this key is still running".
RETRY_LATER_TYPES = frozenset({"concurrent_idempotent_requests", "rate_limit_exceeded"})


class PooledRequestsClient(HTTPClient):
    """The SDK's requests client with one keep-alive session per thread.

    The stock client opens a new connection for every e-mail; under load that
    is most of the cost of a send.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            pin_environment(session, resend.api_url)
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            resp = self._session().request(
                method=method,
                url=url,
                headers=dict(headers),
                json=json if data is None and files is None else None,
                data=data,
                files=files,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            # The SDK turns this into ResendError(error_type="HttpClientError").
            raise RuntimeError(f"Request failed: {type(exc).__name__}") from exc
        return resp.content, resp.status_code, resp.headers


class ResendEmail:
    """Resend's Emails API. The SDK is configured through module globals, set once here."""

    name = "resend"

    def __init__(self, settings: Settings) -> None:
        if not settings.resend_api_key:
            raise ProviderConfigError("Resend needs RESEND_API_KEY")
        resend.api_key = settings.resend_api_key.get_secret_value()
        if settings.resend_api_base_url:
            resend.api_url = settings.resend_api_base_url
        resend.default_http_client = PooledRequestsClient(timeout=settings.provider_timeout_s)
        self._from = settings.email_from

    def _params(self, email: Email) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": self._from,
            "to": [email.to],
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
        }
        if email.tags:
            params["tags"] = [{"name": k, "value": v} for k, v in email.tags]
        return params

    def send(self, email: Email) -> str:
        """Send with the delivery's idempotency key; return Resend's e-mail id."""
        params = self._params(email)
        try:
            response = resend.Emails.send(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": email.idempotency_key},
            )
        except ResendError as exc:
            raise classify(exc) from exc
        return str(response["id"])

    def send_batch(self, emails: list[Email], idempotency_key: str) -> list[BatchResult]:
        """POST /emails/batch in permissive mode: one refused address fails only itself.

        The SDK sends `options` as the Idempotency-Key and x-batch-validation
        headers. Resend answers the accepted e-mails' ids in order and the
        refused ones as {index, message}.
        """
        params = [self._params(email) for email in emails]
        try:
            response = resend.Batch.send(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key, "batch_validation": "permissive"},
            )
        except ResendError as exc:
            raise classify(exc) from exc
        errors = {int(e["index"]): str(e.get("message") or "refused")
                  for e in (response.get("errors") or [])}
        ids = iter(str(item["id"]) for item in (response.get("data") or []))
        results: list[BatchResult] = []
        for index in range(len(emails)):
            if index in errors:
                results.append(BatchResult(None, errors[index]))
                continue
            message_id = next(ids, None)
            results.append(BatchResult(message_id, None if message_id else "no id answered"))
        return results


def classify(exc: ResendError) -> ProviderError:
    """Map a Resend SDK error onto retry-or-fail."""
    error_type = str(getattr(exc, "error_type", "") or "")
    try:
        status = int(exc.code)
    except (TypeError, ValueError):
        status = 0
    message = str(getattr(exc, "message", "") or exc)
    if error_type == "HttpClientError":
        # A timeout or dropped connection: Resend may have the e-mail. The same
        # idempotency key on the retry makes that harmless.
        return ProviderError(error_type, message, transient=True, outcome_unknown=True)
    label = error_type or f"http_{status}"
    if status == 429 or error_type in RETRY_LATER_TYPES:
        headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None:
            retry_after = parse_retry_after(headers.get("ratelimit-reset"))
        # Only the per-second limit is a wait; a daily or monthly quota is an error.
        per_second = status == 429 and error_type in ("rate_limit_exceeded", "")
        return ProviderError(
            label, message, transient=True, outcome_unknown=status == 409,
            retry_after=retry_after, rate_limited=per_second,
        )
    if status >= 500 or status == 0:
        return ProviderError(label, message, transient=True, outcome_unknown=True)
    if error_type == "invalid_idempotent_request":
        # Resend already holds a request under this key (another payload):
        # that earlier request may well have been accepted. Final, but never
        # "not sent": no fallback, and outcome_unknown stays for retry-failed.
        return ProviderError(label, message, transient=False, outcome_unknown=True)
    return ProviderError(label, message, transient=False)
