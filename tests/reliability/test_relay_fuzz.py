"""schemathesis against the relay's own OpenAPI schema: no generated request earns a 5xx.

Driven through hypothesis directly: schemathesis' pytest plugin does not
support pytest 9 yet.
"""

from __future__ import annotations

import time

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tasks.relay import create_app
from tests.relay_helpers import RELAY_TOKEN, relay_settings

pytest_plugins = ["tests.relay_helpers"]
pytestmark = pytest.mark.reliability

JWT_SECRET = "fuzz-legacy-supabase-secret-0123456789"
# Staff, so the /api routes are exercised past the token and into the database.
ADMIN_TOKEN = jwt.encode({"sub": "staff", "role": "authenticated", "aud": "authenticated",
                          "exp": int(time.time()) + 3600, "app_metadata": {"role": "admin"}},
                         JWT_SECRET, algorithm="HS256")


def test_no_generated_request_gets_a_server_error(clean_db, live_broker):
    app = create_app(relay_settings(database_url=clean_db, celery_broker_url=live_broker,
                                    supabase_jwt_secret=JWT_SECRET))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[str, int] = {}
    try:
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7  # every route but the schema itself
        for operation in operations:
            _fuzz(operation, seen)
    finally:
        app.state.relay.stop()
    assert all(count > 0 for count in seen.values()) and len(seen) == len(operations)


def _fuzz(operation, seen: dict[str, int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        # Some cases carry the right token, so /tick is exercised past its auth check.
        if case.path == "/tick" and case.headers is not None and seen.get(label, 0) % 2:
            case.headers["Authorization"] = f"Bearer {RELAY_TOKEN}"
        if case.path.startswith("/api/") and seen.get(label, 0) % 2:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = case.call()
        seen[label] = seen.get(label, 0) + 1
        assert response.status_code < 500, (label, response.status_code, response.text[:300])

    check()
