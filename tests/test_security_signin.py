"""Sign-in that holds: shared counters, trusted proxies only, the same answers for every
number, and no id of another person in what a customer reads."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.portal import views
from tests.pg import new_registration
from tests.portal_helpers import (
    CODE_LINE,
    post,
    supabase_settings,
    verify_settings,
)

pytest_plugins = ["tests.portal_helpers", "tests.relay_helpers"]

#: Today's session cookie name and the `__Host-` one (https).
SESSION_NAMES = ("__Host-rn_session", "rn_session")
OLD, NEW = "+15553330001", "+15553330002"


@pytest.fixture(autouse=True)
def quick_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.0)


def _code(capsys: pytest.CaptureFixture[str]) -> str:
    found = CODE_LINE.findall(capsys.readouterr().out)
    assert found, "no sign-in code printed"
    return found[-1][1]


def _session(client) -> str:
    for name in SESSION_NAMES:
        if client.cookies.get(name):
            return str(client.cookies.get(name))
    raise AssertionError("no session cookie")


def _console_sign_in(client, capsys, phone: str) -> str:
    assert post(client, "/portal/code", {"phone": phone}).status_code == 200
    assert post(client, "/portal/sign-in", {"phone": phone, "code": _code(capsys)}
                ).status_code == 303
    return _session(client)


# ── 2. the previous holder of a registration is nobody's to find ─────────────


def test_previous_holders_id_is_nowhere_in_the_new_holders_answers(portal_client, conn,
                                                                     capsys):
    reg = new_registration(conn, customer_phone=OLD, customer_email=None)
    old = portal_client()
    old_token = _console_sign_in(old, capsys, OLD)
    old_sub = jwt.decode(old_token, options={"verify_signature": False})["sub"]
    # Not derived from the number: nobody can work the number out of it.
    assert old_sub != str(uuid.uuid5(uuid.NAMESPACE_URL, "tel:" + OLD))
    home = old.get("/portal").text
    assert post(old, "/portal/preference", {"registration_id": reg, "pref": "email"},
                home).status_code == 303
    # The registration changes hands.
    conn.execute("UPDATE registrations SET customer_phone = %s WHERE id = %s", (NEW, reg))
    new = portal_client()
    token = _console_sign_in(new, capsys, NEW)
    bearer = {"Authorization": f"Bearer {token}"}
    timeline = new.get(f"/api/registrations/{reg}/timeline", headers=bearer)
    mine = new.get("/api/me/registrations", headers=bearer)
    page = new.get("/portal")
    assert timeline.status_code == mine.status_code == page.status_code == 200
    changes = [e for e in timeline.json()["events"] if e["kind"] == "preference_change"]
    assert [(c["changed_by"], c["changed_by_label"]) for c in changes] == [
        (None, "the dealership")]
    for answer in (timeline.text, mine.text, page.text):
        assert old_sub not in answer and OLD[1:] not in answer
    # The earlier holder's own change reads "you" to them while it was theirs.
    conn.execute("UPDATE registrations SET customer_phone = %s WHERE id = %s", (OLD, reg))
    theirs = old.get(f"/api/registrations/{reg}/timeline",
                     headers={"Authorization": f"Bearer {old_token}"}).json()
    assert [(e["changed_by"], e["changed_by_label"]) for e in theirs["events"]
            if e["kind"] == "preference_change"] == [("you", "you")]


# ── 6. counters every relay shares, kept across restarts ────────────────────


@pytest.fixture(params=["postgresql", "redis"])
def store(request, redis_server) -> dict[str, Any]:
    if request.param == "postgresql":
        return {}
    client = redis_server.client() if hasattr(redis_server, "client") else None
    import redis as redis_lib

    client = client or redis_lib.Redis.from_url(redis_server.url)
    for key in client.scan_iter("regnotify:signin:*"):
        client.delete(key)
    return {"coordination_redis_url": redis_server.url}


def test_two_relays_share_one_sign_in_budget_and_a_restart_keeps_it(portal_client, store,
                                                                     capsys):
    from tasks.portal import limits

    one, two = portal_client(**store), portal_client(**store)
    phone = "+15553330010"
    answers = [post(c, "/portal/code", {"phone": phone}).status_code
               for c in (one, two, one)]
    assert answers == [200] * limits.SENDS_PER_NUMBER
    assert post(two, "/portal/code", {"phone": phone}).status_code == 429
    restarted = portal_client(**store)
    assert post(restarted, "/portal/code", {"phone": phone}).status_code == 429
    assert restarted.app.state.portal.counters.backend == (
        "redis" if store else "postgresql")
    # Checks too: five wrong ones on two relays, a resend, and even the new
    # right code is refused (a new code buys no guesses).
    other = "+15553330011"
    post(one, "/portal/code", {"phone": other})
    code = _code(capsys)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    statuses = [post(c, "/portal/sign-in", {"phone": other, "code": wrong}).status_code
                for c in (one, two, one, two, one)]
    assert statuses == [401] * 5
    assert post(two, "/portal/code", {"phone": other}).status_code == 200
    fresh = _code(capsys)
    assert post(restarted, "/portal/sign-in", {"phone": other, "code": fresh}
                ).status_code == 429


def test_the_client_address_comes_from_trusted_proxies_only(portal_client):
    from tasks.portal import limits

    spoofer = portal_client()  # the peer (the test client) is no trusted proxy
    for i in range(limits.SENDS_PER_IP):
        headers = {"X-Forwarded-For": f"198.51.100.{i}"}
        assert spoofer.post("/portal/code", data={"phone": f"+1555444{i:04d}", "csrf": _csrf(
            spoofer)}, headers=headers).status_code == 200
    # A made-up X-Forwarded-For does not buy a fresh bucket.
    assert spoofer.post("/portal/code", data={"phone": "+15554449999", "csrf": _csrf(spoofer)},
                        headers={"X-Forwarded-For": "198.51.100.200"}).status_code == 429
    # Behind a trusted proxy each customer has their own bucket.
    proxied = portal_client(forwarded_allow_ips="*")
    for i in range(limits.SENDS_PER_IP):
        assert proxied.post("/portal/code", data={"phone": f"+1555445{i:04d}", "csrf": _csrf(
            proxied)}, headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    assert proxied.post("/portal/code", data={"phone": "+15554459999", "csrf": _csrf(proxied)},
                        headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429
    assert proxied.post("/portal/code", data={"phone": "+15554459998", "csrf": _csrf(proxied)},
                        headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200


def _csrf(client) -> str:
    from tests.portal_helpers import csrf

    return csrf(client.get("/portal").text)


# ── 5. the same answers for a number with an account and one without ───────


def _sequence(client, phone: str, wrong: str) -> list[tuple[int, str, float]]:
    """send, send again, six wrong checks: (status, body without the number, seconds)."""
    steps = [("/portal/code", {"phone": phone}), ("/portal/code", {"phone": phone})]
    steps += [("/portal/sign-in", {"phone": phone, "code": wrong})] * 6
    seen = []
    for path, fields in steps:
        started = time.monotonic()
        answer = post(client, path, fields)
        took = time.monotonic() - started
        # The random CSRF value first: it may hold the number's last digits.
        body = _CSRF_VALUE.sub("CSRF", answer.text)
        body = body.replace(phone, "NUMBER").replace(phone[-4:], "####")
        seen.append((answer.status_code, body, took))
    return seen


_CSRF_VALUE = re.compile(r'name="csrf" value="[0-9a-f]+"')


def _same(known: list[tuple[int, str, float]], unknown: list[tuple[int, str, float]],
          floor: float) -> None:
    assert [(s, b) for s, b, _ in known] == [(s, b) for s, b, _ in unknown]
    # The floor hides what the sender answered: every step takes at least it.
    assert all(t >= floor for _, _, t in known + unknown)


def test_supabase_known_and_unknown_numbers_answer_alike(portal_client, supabase_auth,
                                                          monkeypatch):
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.05)
    supabase_auth.allow_signups = False
    try:
        known, unknown = "+15553330020", "+15553330021"
        supabase_auth.add_user(known)
        client = portal_client(**supabase_settings(supabase_auth))
        a = _sequence(client, known, "111111")
        b = _sequence(portal_client(**supabase_settings(supabase_auth)), unknown, "111111")
        _same(a, b, 0.05)
        assert [s for s, _, _ in a] == [200, 429] + [401] * 5 + [429]
    finally:
        supabase_auth.allow_signups = True


def test_twilio_verify_known_and_refused_numbers_answer_alike(portal_client, twilio_verify,
                                                               monkeypatch):
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.05)
    known, landline = "+15553330030", "+15553330031"
    twilio_verify.script(landline, ["60205"])  # Twilio refuses the number: no verification
    a = _sequence(portal_client(**verify_settings(twilio_verify)), known, "111111")
    b = _sequence(portal_client(**verify_settings(twilio_verify)), landline, "111111")
    _same(a, b, 0.05)


def test_console_known_and_unknown_numbers_answer_alike(portal_client, conn, monkeypatch):
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.05)
    new_registration(conn, customer_phone="+15553330040")
    a = _sequence(portal_client(), "+15553330040", "111111")
    b = _sequence(portal_client(), "+15553330041", "111111")
    _same(a, b, 0.05)


# Any sequence of sends and wrong checks, not just the one above: a number
# with a Supabase account and one without are answered alike at every step.
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(["send", "check"]), min_size=1, max_size=14))
def test_any_sequence_answers_known_and_unknown_alike(portal_client, supabase_auth, clean_db,
                                                      monkeypatch, steps):
    from tests.portal_helpers import forget_signin_counters

    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.0)
    supabase_auth.reset(config=True)
    forget_signin_counters(clean_db)
    supabase_auth.allow_signups = False
    try:
        known, unknown = "+15553330050", "+15553330051"
        supabase_auth.add_user(known)
        seen = {}
        for n, phone in enumerate((known, unknown)):
            # Each from an address of its own (behind a trusted proxy), so the
            # per-address count of one does not reach the other.
            client = portal_client(forwarded_allow_ips="*", **supabase_settings(supabase_auth))
            client.headers["X-Forwarded-For"] = f"203.0.113.{n + 1}"
            answers = []
            for step in steps:
                path, fields = (("/portal/code", {"phone": phone}) if step == "send"
                                else ("/portal/sign-in", {"phone": phone, "code": "111111"}))
                answer = post(client, path, fields)
                # The random CSRF value first: it may hold the number's last digits.
                body = (_CSRF_VALUE.sub("CSRF", answer.text).replace(phone, "N")
                        .replace(phone[-4:], "#"))
                answers.append((answer.status_code, body))
            seen[phone] = answers
            # Many examples, many relays: give each one's connections back now.
            client.app.state.relay.stop()
        for i, (a, b) in enumerate(zip(seen[known], seen[unknown], strict=True)):
            differ = [(x, y) for x, y in zip(a[1].splitlines(), b[1].splitlines(), strict=False)
                      if x != y]
            assert a == b, f"step {i} ({steps[i]}): {a[0]} vs {b[0]}: {differ[:3]}"
    finally:
        supabase_auth.allow_signups = True


@pytest.mark.parametrize(("peer", "forwarded", "allow", "expected"), [
    ("10.0.0.5", "198.51.100.7", "10.0.0.0/8", "198.51.100.7"),
    # A client's own header sits left of what the proxy appended: ignored.
    ("10.0.0.5", "1.2.3.4, 198.51.100.7", "10.0.0.0/8", "198.51.100.7"),
    # Two proxies in a row, both trusted.
    ("10.0.0.5", "198.51.100.7, 10.0.0.9", "10.0.0.0/8", "198.51.100.7"),
    # An untrusted peer's header is never read.
    ("198.51.100.9", "10.1.1.1", "10.0.0.0/8", "198.51.100.9"),
    ("127.0.0.1", "198.51.100.7", "127.0.0.1,::1", "198.51.100.7"),
    ("::1", "2001:db8::5", "127.0.0.1,::1", "2001:db8::5"),
    ("10.0.0.5", None, "10.0.0.0/8", "10.0.0.5"),
    ("10.0.0.5", "198.51.100.7", "", "10.0.0.5"),
    # '*': every peer is a proxy, so only the last hop was written by one; the
    # client's own value (left of it) buys no fresh address.
    ("10.0.0.5", "1.2.3.4, 198.51.100.7", "*", "198.51.100.7"),
    ("10.0.0.5", "198.51.100.7", "*", "198.51.100.7"),
])
def test_client_address_rules(peer, forwarded, allow, expected):
    from tasks.portal.limits import client_address, trusted_networks

    assert client_address(peer, forwarded, trusted_networks(allow)) == expected
