"""The customer page under test: a relay app per sender, a browser-like client, form posts.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from tasks.relay import create_app
from tests.relay_helpers import relay_settings
from tests.wire.supabase_auth_wire import SupabaseAuthWire
from tests.wire.twilio_verify_wire import TwilioVerifyWire

SESSION_SECRET = "portal-test-session-secret-0123456789abcdef"
#: The session cookie's name on the https page the test clients use.
SESSION_COOKIE = "__Host-rn_session"
CODE_LINE = re.compile(r"sign-in code for (\+\*+\d{4}): (\d{6})")
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf(page: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(page)
    assert found, page[:2000]
    return found.group(1)


def post(client: TestClient, path: str, fields: dict[str, str], page: str | None = None,
         *, with_csrf: bool = True) -> Any:
    """Post a form the way the browser does (its CSRF token taken from `page`)."""
    if with_csrf:
        page = page if page is not None else client.get("/portal").text
        fields = {"csrf": csrf(page), **fields}
    return client.post(path, data=fields, follow_redirects=False)


@pytest.fixture(scope="session")
def supabase_auth_server() -> Iterator[SupabaseAuthWire]:
    with SupabaseAuthWire() as wire:
        yield wire


@pytest.fixture()
def supabase_auth(supabase_auth_server: SupabaseAuthWire) -> Iterator[SupabaseAuthWire]:
    supabase_auth_server.reset(config=True)
    yield supabase_auth_server
    supabase_auth_server.reset(config=True)


@pytest.fixture(scope="session")
def twilio_verify_server() -> Iterator[TwilioVerifyWire]:
    with TwilioVerifyWire() as wire:
        yield wire


@pytest.fixture()
def twilio_verify(twilio_verify_server: TwilioVerifyWire) -> Iterator[TwilioVerifyWire]:
    twilio_verify_server.reset(config=True)
    yield twilio_verify_server
    twilio_verify_server.reset(config=True)


def supabase_settings(wire: SupabaseAuthWire) -> dict[str, Any]:
    return {"supabase_url": wire.url, "supabase_anon_key": wire.anon_key,
            "supabase_jwt_secret": wire.jwt_secret}


def verify_settings(wire: TwilioVerifyWire) -> dict[str, Any]:
    return {"twilio_verify_service_sid": wire.service_sid, "twilio_account_sid": wire.account_sid,
            "twilio_auth_token": wire.auth_token, "twilio_verify_base_url": wire.url}


@pytest.fixture()
def portal_client(clean_db: str) -> Iterator[Callable[..., TestClient]]:
    """A relay app (no lifespan) as the page's browser sees it over https."""
    made: list[TestClient] = []
    forget_signin_counters(clean_db)

    def make(*, loopback: bool = True, **overrides: Any) -> TestClient:
        overrides.setdefault("database_url", clean_db)
        overrides.setdefault("session_secret", SESSION_SECRET)
        app = create_app(relay_settings(**overrides), loopback=loopback)
        client = TestClient(app, base_url="https://testserver")
        made.append(client)
        return client

    yield make
    for client in made:
        client.app.state.relay.stop()  # type: ignore[attr-defined]
        client.close()
    forget_signin_counters(clean_db)


def forget_signin_counters(database_url: str) -> None:
    """Start a test with no sign-in counted (they live in the database, shared by relays)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM public.coordination_slots WHERE name LIKE 'regnotify:signin:%'")
