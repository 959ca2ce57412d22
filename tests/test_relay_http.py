"""The relay's own endpoints in process: POST /tick, /healthz, /openapi.json, /metrics."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from tasks.local.embedded_postgres import free_port
from tasks.relay import RelayConfigError, create_app
from tests.relay_helpers import (
    RELAY_TOKEN,
    celery_broker,
    queued,
    queued_task_names,
    relay_settings,
)

pytest_plugins = ["tests.relay_helpers"]

PG_NET_HEADERS = {"Content-Type": "application/json", "User-Agent": "pg_net/0.14"}
PG_NET_BODY = b'{"at": "2025-01-01T00:00:00+00:00", "source": "pg_cron"}'


def _bearer(token: str = RELAY_TOKEN) -> dict[str, str]:
    return {**PG_NET_HEADERS, "Authorization": f"Bearer {token}"}


# ── POST /tick ───────────────────────────────────────────────────────────────


def test_tick_with_the_token_enqueues_one_run_and_coalesces_the_next(relay_client, live_broker):
    client = relay_client()
    first = client.post("/tick", content=PG_NET_BODY, headers=_bearer())
    assert first.status_code == 202
    assert first.json()["coalesced"] is False and first.json()["task_id"]
    second = client.post("/tick", content=PG_NET_BODY, headers=_bearer())
    assert second.status_code == 202
    assert second.json() == {"task_id": None, "coalesced": True}
    assert queued_task_names(live_broker) == ["process_notification_queue"]


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, None),
        ("Bearer wrong-token", "invalid_token"),
        (f"Basic {RELAY_TOKEN}", None),
        ("Bearer ", None),
        (f"Bearer {RELAY_TOKEN}x", "invalid_token"),
        ("Bearer tökén", "invalid_token"),
    ],
)
def test_tick_without_the_right_token_is_401_with_a_challenge(
    relay_client, live_broker, authorization, error
):
    client = relay_client()
    headers: dict[str, str | bytes] = dict(PG_NET_HEADERS)
    if authorization is not None:
        # Bytes, so a non-ASCII token reaches the relay as a client could send it.
        headers["Authorization"] = authorization.encode("utf-8")
    response = client.post("/tick", content=PG_NET_BODY, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert (error in challenge) if error else ("error=" not in challenge)
    assert queued(live_broker) == 0


def test_tick_bodies_over_the_limit_are_413_declared_or_chunked(relay_client, live_broker):
    client = relay_client(relay_max_body_bytes=1024)
    declared = client.post("/tick", content=b"{" + b" " * 2000 + b"}", headers=_bearer())
    assert declared.status_code == 413

    def chunks():
        for _ in range(10):
            yield b" " * 300

    chunked = client.post("/tick", content=chunks(), headers=_bearer())
    assert chunked.status_code == 413
    assert queued(live_broker) == 0
    # Right at the limit is fine.
    assert client.post("/tick", content=b" " * 1024, headers=_bearer()).status_code == 202


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2", b"null"])
def test_tick_ignores_a_malformed_body(relay_client, live_broker, body):
    response = relay_client().post("/tick", content=body, headers=_bearer())
    assert response.status_code == 202
    assert queued(live_broker) == 1


def test_tick_is_503_when_the_broker_is_down(relay_client, clean_db):
    client = relay_client()
    with celery_broker(f"redis://127.0.0.1:{free_port()}/0", clean_db):
        response = client.post("/tick", content=PG_NET_BODY, headers=_bearer())
    assert response.status_code == 503
    assert response.json() == {"error": "broker unavailable"}


def test_local_only_without_a_token_accepts_ticks(relay_client, live_broker):
    client = relay_client(relay_token=None, local_only=True)
    assert client.post("/tick", content=PG_NET_BODY, headers=PG_NET_HEADERS).status_code == 202


def test_local_only_with_a_token_still_requires_it(relay_client, live_broker):
    client = relay_client(local_only=True)
    assert client.post("/tick", content=PG_NET_BODY, headers=PG_NET_HEADERS).status_code == 401


@pytest.mark.parametrize("token", [None, ""])
def test_the_app_refuses_to_exist_without_a_token(token):
    with pytest.raises(RelayConfigError, match="RELAY_TOKEN"):
        create_app(relay_settings(relay_token=token))


def test_other_methods_are_405(relay_client):
    client = relay_client()
    assert client.get("/tick").status_code == 405
    assert client.post("/healthz").status_code == 405


# ── GET /healthz ─────────────────────────────────────────────────────────────


def test_healthz_is_200_when_database_and_broker_answer(relay_client):
    response = relay_client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["broker"] == "ok"
    assert body["listener"] == "off" and body["ticker"] == "off"


def test_healthz_names_a_broker_that_does_not_answer(relay_client):
    client = relay_client(celery_broker_url=f"redis://127.0.0.1:{free_port()}/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["database"] == "ok" and body["broker"].startswith("error")


def test_healthz_names_a_database_that_does_not_answer(relay_client):
    client = relay_client(
        database_url=f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/nowhere")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["database"] and body["broker"] == "ok"
    assert "s3cret" not in response.text


def test_healthz_answers_fast_when_the_broker_is_a_black_hole(relay_client):
    # A listening socket that never answers: the check must time out, not hang.
    import socket
    import time

    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(1)
        port = sink.getsockname()[1]
        client = relay_client(celery_broker_url=f"redis://127.0.0.1:{port}/0",
                              relay_health_timeout_s=0.5)
        started = time.monotonic()
        response = client.get("/healthz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503 and response.json()["failed"] == ["broker"]
    assert elapsed < 2.5


# ── GET /openapi.json and /metrics ───────────────────────────────────────────


def test_openapi_describes_every_route(relay_client):
    client = relay_client()
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = {r.path: r.methods for r in client.app.routes if isinstance(r, Route)}
    assert set(doc["paths"]) == set(routes)
    for path, methods in routes.items():
        documented = {m.upper() for m in doc["paths"][path]}
        assert documented == methods - {"HEAD"}, path
        for operation in doc["paths"][path].values():
            assert operation["responses"], path
    for path in ("/tick", "/webhooks/twilio/status", "/webhooks/twilio/inbound",
                 "/webhooks/resend"):
        operation = doc["paths"][path]["post"]
        assert operation["security"] and "requestBody" in operation
        for scheme in operation["security"]:
            assert set(scheme) <= set(doc["components"]["securitySchemes"])
    assert doc["components"]["securitySchemes"]["relayToken"]["scheme"] == "bearer"


def test_docs_render_every_path(relay_client):
    response = relay_client().get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    for path in ("/tick", "/healthz", "/webhooks/twilio/status", "/webhooks/resend"):
        assert f"{path}</code>" in response.text


def test_metrics_count_ticks(relay_client, live_broker):
    client = relay_client()
    client.post("/tick", content=PG_NET_BODY, headers=_bearer())
    client.post("/tick", content=PG_NET_BODY, headers=_bearer())
    text = client.get("/metrics").text
    assert 'regnotify_relay_ticks_total{outcome="enqueued",source="http"} 1.0' in text
    assert 'regnotify_relay_ticks_total{outcome="coalesced",source="http"} 1.0' in text
