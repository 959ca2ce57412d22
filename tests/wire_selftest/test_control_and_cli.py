"""The ``/_wire/`` control API, other processes, the CLI and the chaos knobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import resend
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.wire import (
    ACCEPTED,
    RATE_LIMITED,
    SERVER_ERROR,
    RemoteWire,
    ResendWire,
    TwilioWire,
    WireControlError,
)

ROOT = Path(__file__).resolve().parents[2]
TO = "+15551230001"
FROM = "+15005550006"


def control(url: str, method: str, name: str, payload: Any = None) -> tuple[int, Any]:
    """One raw control call: what a non-Python tool (curl) would do."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/_wire/{name}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_python(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- control API over raw HTTP -------------------------------------------------


def test_control_api_over_http(twilio_wire: TwilioWire, twilio_client: Client) -> None:
    url = twilio_wire.url
    assert control(url, "GET", "health") == (
        200,
        {"ok": True, "provider": "twilio", "url": url},
    )
    status, config = control(url, "POST", "config", {"latency": 0.01, "retry_after": 2})
    assert status == 200 and config["latency"] == 0.01 and config["retry_after"] == 2
    assert twilio_wire.config.latency == 0.01

    status, scripts = control(url, "POST", "script", {"recipient": TO, "steps": ["500", "429"]})
    assert (status, scripts) == (200, {"pending": {TO: ["500", "429"]}})
    for expected in (500, 429):
        with pytest.raises(TwilioRestException) as info:
            twilio_client.messages.create(to=TO, from_=FROM, body="x")
        assert info.value.status == expected
    message = twilio_client.messages.create(to=TO, from_=FROM, body="hello", status_callback="cb")

    status, sends = control(url, "GET", f"sends?to={TO.replace('+', '%2B')}")
    assert status == 200 and sends["count"] == 1
    record = sends["sends"][0]
    assert (record["id"], record["to"], record["from"], record["body"]) == (
        message.sid,
        TO,
        FROM,
        "hello",
    )
    assert record["status_callback"] == "cb" and record["received_at"] > 0

    _, attempts = control(url, "GET", "attempts")
    assert [a["outcome"] for a in attempts["attempts"]] == [SERVER_ERROR, RATE_LIMITED, ACCEPTED]
    _, stats = control(url, "GET", "stats")
    assert stats["accepted"] == 1 and stats["by_status"] == {"201": 1, "429": 1, "500": 1}

    assert control(url, "POST", "reset", {"config": True}) == (200, {"ok": True})
    assert twilio_wire.accepted_count() == 0 and twilio_wire.config.latency == 0


def test_control_api_rejects_bad_input(twilio_wire: TwilioWire) -> None:
    url = twilio_wire.url
    status, body = control(url, "POST", "config", {"no_such_knob": 1})
    assert status == 400 and "no_such_knob" in body["error"]
    status, body = control(url, "POST", "config", {"error_rate": 2})
    assert status == 400
    status, body = control(url, "POST", "script", {"recipient": TO, "steps": ["explode"]})
    assert status == 400 and "explode" in body["error"]
    status, _ = control(url, "GET", "nothing-here")
    assert status == 404


def test_control_wait_and_rate_limit(twilio_wire: TwilioWire, twilio_client: Client) -> None:
    remote = RemoteWire(twilio_wire.url)
    remote.rate_limit(count=1, retry_after=9)
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages.create(to=TO, from_=FROM, body="x")
    assert info.value.status == 429

    threading.Timer(
        0.2, lambda: twilio_client.messages.create(to=TO, from_=FROM, body="later")
    ).start()
    [send] = remote.wait_for_sends(1, recipient=TO, timeout=5)
    assert send.body == "later"
    with pytest.raises(TimeoutError):
        remote.wait_for_sends(2, timeout=0.2)


def test_remote_wire_mirrors_the_object(resend_wire: ResendWire) -> None:
    remote = RemoteWire(resend_wire.url)
    assert remote.health()["provider"] == "resend"
    assert remote.info()["api_key"] == resend_wire.api_key
    remote.configure(latency=0.0, seed=7)
    remote.script("a@example.com", ["500"])
    assert remote.pending_scripts() == {"a@example.com": ["500"]}
    remote.clear_scripts()
    assert remote.pending_scripts() == {}

    params = {"from": "x@dealer.example", "to": "a@example.com", "subject": "s", "text": "t"}
    first = resend.Emails.send(params)
    resend.Emails.send(params)
    [send, _] = remote.sends("A@example.com")
    assert (send.id, send.subject, send.text, send.from_) == (first["id"], "s", "t", params["from"])
    assert remote.accepted_count() == 2 and remote.accepted_count("a@example.com") == 2
    assert len(remote.duplicates()) == 1
    assert [a.outcome for a in remote.attempts()] == [ACCEPTED, ACCEPTED]
    assert remote.set_status(first["id"], "bounced").status == "bounced"
    remote.reset()
    assert remote.accepted_count() == 0
    with pytest.raises(WireControlError) as info:
        remote.configure(drop_rate=-1)
    assert info.value.status == 400


# -- other processes ---------------------------------------------------------------


def test_other_process_sends_and_drives_chaos(twilio_wire: TwilioWire) -> None:
    """What a Celery worker plus a reliability helper look like to a wire."""
    result = run_python(
        f"""
        from twilio.base.exceptions import TwilioRestException
        from twilio.rest import Client
        from tests.wire import RemoteWire

        RemoteWire({twilio_wire.url!r}).script({TO!r}, ["500"])
        client = Client({twilio_wire.account_sid!r}, {twilio_wire.auth_token!r})
        client.edge = client.region = None
        client.api.base_url = {twilio_wire.url!r}
        try:
            client.messages.create(to={TO!r}, from_={FROM!r}, body="from a worker")
        except TwilioRestException as exc:
            print("first", exc.status)
        print("sid", client.messages.create(to={TO!r}, from_={FROM!r}, body="from a worker").sid)
        """
    )
    assert result.returncode == 0, result.stderr
    [send] = twilio_wire.wait_for_sends(1, recipient=TO, timeout=5)
    assert result.stdout.split() == ["first", "500", "sid", send.id]
    assert send.body == "from a worker"


@pytest.fixture()
def cli_resend() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.wire", "resend", "--json", "--latency", "0.01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_serves_until_sigint(
    cli_resend: tuple[subprocess.Popen[str], dict[str, Any]], resend_wire: ResendWire
) -> None:
    proc, info = cli_resend
    assert info["provider"] == "resend" and info["url"].startswith("http://127.0.0.1:")
    # resend_wire's fixture restores the SDK globals changed here.
    resend.api_url, resend.api_key = info["url"], info["api_key"]
    sent = resend.Emails.send({"from": "a@b.example", "to": "c@d.example", "subject": "s"})
    remote = RemoteWire(info["url"])
    assert [s.id for s in remote.sends()] == [sent["id"]]
    assert remote.config()["latency"] == 0.01

    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    assert proc.stderr is not None
    final = json.loads(proc.stderr.read().strip().splitlines()[-1])["final"]
    assert final["accepted"] == 1
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{info['url']}/_wire/health", timeout=1)


def test_cli_stops_on_sigterm_even_with_a_stalled_request() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.wire", "twilio", "--timeout-after-accept", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        info = RemoteWire(url).info()
        client = Client(info["account_sid"], info["auth_token"])
        client.edge = client.region = None
        client.api.base_url = url
        errors: list[BaseException] = []

        def send() -> None:
            try:
                client.messages.create(to=TO, from_=FROM, body="x")
            except BaseException as exc:
                errors.append(exc)

        stalled = threading.Thread(target=send, daemon=True)
        stalled.start()
        RemoteWire(url).wait_for_sends(1, timeout=5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - started < 3
        stalled.join(5)
        # The stalled request is cut, not answered late: the wire is gone.
        assert [type(e) for e in errors] == [requests.exceptions.ConnectionError]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.wire", "twilio", "--error-rate", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2 and "error-rate" in result.stderr


# -- chaos knobs ---------------------------------------------------------------------


def test_error_rate_and_seed_are_reproducible(twilio_wire: TwilioWire, twilio_client: Client):
    def run() -> list[int]:
        twilio_wire.reset()
        twilio_wire.configure(error_rate=0.5, error_statuses=[503], seed=42)
        statuses = []
        for _ in range(12):
            try:
                twilio_client.messages.create(to=TO, from_=FROM, body="x")
                statuses.append(201)
            except TwilioRestException as exc:
                statuses.append(exc.status)
        return statuses

    first = run()
    assert set(first) == {201, 503}
    assert run() == first
    assert twilio_wire.accepted_count() == first.count(201)


def test_max_rps_answers_429_beyond_the_rate(twilio_wire: TwilioWire, twilio_client: Client):
    twilio_wire.configure(max_rps=3)
    statuses = []
    for _ in range(6):
        try:
            twilio_client.messages.create(to=TO, from_=FROM, body="x")
            statuses.append(201)
        except TwilioRestException as exc:
            statuses.append(exc.status)
    # A fresh bucket admits a full burst, then refuses.
    assert statuses[:3] == [201, 201, 201]
    assert 429 in statuses[3:]


def test_drop_rate_one_drops_everything(twilio_wire: TwilioWire, twilio_client: Client) -> None:
    twilio_wire.configure(drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        twilio_client.messages.create(to=TO, from_=FROM, body="x")
    assert twilio_wire.accepted_count() == 0
    # Reads are spared unless chaos_on_reads is set.
    assert twilio_client.messages.list(to=TO) == []


def test_latency_applies_to_every_request(twilio_wire: TwilioWire, twilio_client: Client) -> None:
    twilio_wire.configure(latency=0.3)
    started = time.monotonic()
    twilio_client.messages.create(to=TO, from_=FROM, body="x")
    assert time.monotonic() - started >= 0.3


def test_unknown_script_step_is_refused(twilio_wire: TwilioWire) -> None:
    with pytest.raises(ValueError, match="unknown script step"):
        twilio_wire.script(TO, ["sometimes"])


def test_wait_for_sends_times_out_with_what_arrived(twilio_wire: TwilioWire) -> None:
    with pytest.raises(TimeoutError, match="got 0"):
        twilio_wire.wait_for_sends(1, timeout=0.1)


def test_stop_refuses_connections_and_wakes_stalled_handlers() -> None:
    wire = TwilioWire(timeout_after_accept=60).start()
    client = wire.client(timeout=30)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client.messages.create(to=TO, from_=FROM, body="x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    wire.wait_for_sends(1, timeout=5)
    started = time.monotonic()
    url = wire.url
    wire.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert [type(e) for e in errors] == [requests.exceptions.ConnectionError]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/_wire/health", timeout=1)


def test_restart_keeps_url_ledger_and_knobs() -> None:
    wire = TwilioWire(latency=0.01).start()
    try:
        client = wire.client(timeout=5)
        client.messages.create(to=TO, from_=FROM, body="before")
        url = wire.url
        wire.stop()
        assert wire.url == url
        with pytest.raises(requests.exceptions.ConnectionError):
            client.messages.create(to=TO, from_=FROM, body="during outage")
        wire.start()
        assert wire.url == url
        client.messages.create(to=TO, from_=FROM, body="after")
        assert [s.body for s in wire.sends()] == ["before", "after"]
        assert wire.config.latency == 0.01
    finally:
        wire.stop()
