"""An API token on a local stack: `regnotify up` keeps a SESSION_SECRET as it
keeps Flower's password, and `regnotify dev-token` prints a customer's or a staff member's
token that the local relay's /api accepts, refused with one line anywhere else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from tasks.local.embedded_postgres import free_port
from tasks.local.up_state import UpState
from tasks.settings import get_settings
from tests.cli_runner import cli
from tests.pg import connect
from tests.portal_helpers import csrf
from tests.up_process import STACK_ENV, Up, assert_stopped_cleanly, up_env

SECRET = "dev-token-test-secret-0123456789abcdef0123456789"


@pytest.fixture()
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty folder (no .env, no up.env) and none of the stack's settings."""
    monkeypatch.chdir(tmp_path)
    for name in (*STACK_ENV, "SESSION_SECRET", "RELAY_PUBLIC_URL", "PORTAL_URL", "SUPABASE_URL",
                 "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_API_BASE_URL",
                 "RESEND_API_BASE_URL", "EMAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    return cli(capsys, "dev-token", *argv)


def test_a_customer_token_on_a_local_setup(bare_env, capsys, clean_db):
    # The subject is the number's random one, kept in the database the portal also uses.
    bare_env.setenv("DATABASE_URL", clean_db)
    code, out, err = run_cli(capsys, "--customer", "(555) 111-0001")
    assert code == 0, err
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"], audience="authenticated",
                        issuer="regnotify")
    assert (claims["role"], claims["phone"]) == ("authenticated", "15551110001")
    with connect(clean_db) as conn:
        kept = conn.execute("SELECT subject::text AS s FROM public.customer_subjects "
                            "WHERE phone = '+15551110001'").fetchone()
    assert kept is not None and claims["sub"] == kept["s"]
    assert "/api/me/registrations" in err and out.count("\n") == 1


@pytest.mark.parametrize(("name", "value", "said"), [
    ("RELAY_PUBLIC_URL", "https://relay.dealer.example", "RELAY_PUBLIC_URL is relay.dealer"),
    ("PORTAL_URL", "https://my.dealer.example/portal", "PORTAL_URL is my.dealer.example"),
    ("SUPABASE_URL", "https://abc.supabase.co", "SUPABASE_URL is abc.supabase.co"),
    ("DATABASE_URL", "postgresql://app@db.dealer.example:5432/app", "DATABASE_URL is a server"),
    ("RESEND_API_KEY", "re_live_key", "the real Resend"),
])
def test_refused_with_one_line_when_a_setting_points_elsewhere(bare_env, capsys, name, value,
                                                               said):
    if name == "RESEND_API_KEY":
        bare_env.setenv("EMAIL_FROM", "Dealer <r@dealer.example>")
    bare_env.setenv(name, value)
    code, out, err = run_cli(capsys, "--customer", "+15551110001")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and said in err and "local stack only" in err, err


def test_refused_against_the_real_twilio(bare_env, capsys):
    bare_env.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    bare_env.setenv("TWILIO_AUTH_TOKEN", "token")
    bare_env.setenv("TWILIO_FROM_NUMBER", "+15550009999")
    code, out, err = run_cli(capsys, "--customer", "+15551110001")
    assert code == 2 and out == "" and "the real Twilio" in err, err


def test_without_a_session_secret_it_says_where_one_comes_from(bare_env, capsys):
    bare_env.delenv("SESSION_SECRET")
    code, out, err = run_cli(capsys, "--customer", "+15551110001")
    assert code == 2 and out == "" and "regnotify up" in err and err.count("\n") == 1


def test_a_bad_number_or_address_is_one_line(bare_env, capsys):
    code, _, err = run_cli(capsys, "--customer", "555-CALL-NOW")
    assert code == 2 and "has letters" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "--staff", "not-an-address")
    assert code == 2 and "not an e-mail address" in err and err.count("\n") == 1


def test_up_adds_a_session_secret_to_an_older_state_folder(tmp_path):
    folder = tmp_path / ".regnotify"
    folder.mkdir()
    (folder / "secrets.json").write_text(json.dumps(
        {"relay_token": "kept-token", "flower_user": "admin", "flower_password": "kept-pw"}))
    state = UpState(folder)
    first = state.secrets()
    assert (first.relay_token, first.flower_password) == ("kept-token", "kept-pw")
    assert len(first.session_secret) >= 43
    assert state.secrets() == first  # kept from now on
    assert oct((folder / "secrets.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.e2e
def test_tokens_from_dev_token_and_the_portal_are_accepted_by_the_local_api(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    relay = f"http://127.0.0.1:{ports['relay']}"
    env = {k: v for k, v in os.environ.items() if k not in (*STACK_ENV, "SESSION_SECRET")}

    def dev_token(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tasks.cli", "dev-token", *argv],
                              cwd=state_root, env=env, capture_output=True, text=True,
                              timeout=60)

    try:
        up.wait_for("regnotify is up")
        assert "dev-token" in up.wait_for("  api  ")
        kept = json.loads((state_root / ".regnotify" / "secrets.json").read_text())
        assert up_env(state_root)["SESSION_SECRET"] == kept["session_secret"]
        with connect(up_env(state_root)["DATABASE_URL"]) as conn:
            reg = str(conn.execute(
                "INSERT INTO registrations (customer_name, customer_phone) "
                "VALUES ('Token Tess', '+15557770003') RETURNING id").fetchone()["id"])
            # Where staff are kept in SQL, an admin token needs an active one.
            if conn.execute("SELECT to_regclass('public.staff_members') AS t").fetchone()["t"]:
                conn.execute("INSERT INTO staff_members (email, name) "
                             "VALUES ('desk@dealer.example', 'Desk')")
        made = dev_token("--customer", "555 777 0003")
        assert made.returncode == 0, made.stderr
        customer = made.stdout.strip()
        staff = dev_token("--staff", "desk@dealer.example")
        assert staff.returncode == 0, staff.stderr
        with httpx.Client(base_url=relay, timeout=10) as http:
            mine = http.get("/api/me/registrations",
                            headers={"Authorization": f"Bearer {customer}"})
            assert mine.status_code == 200, mine.text
            assert reg in mine.text
            timeline = http.get(f"/api/registrations/{reg}/timeline",
                                headers={"Authorization": f"Bearer {staff.stdout.strip()}"})
            assert timeline.status_code == 200, timeline.text
            assert timeline.json()["registration_id"] == reg
            # The portal's own session cookie is a token the same /api accepts.
            page = http.get("/portal").text
            sent = http.post("/portal/code", data={"csrf": csrf(page), "phone": "+15557770003"})
            code = re.search(r": (\d{6})$", up.wait_for("sign-in code for +*******0003: "))
            signed = http.post("/portal/sign-in", data={"csrf": csrf(sent.text),
                                                        "phone": "+15557770003",
                                                        "code": code.group(1)})
            assert signed.status_code == 303
            cookie = http.cookies.get("rn_session")
            assert cookie
            again = httpx.get(relay + "/api/me/registrations",
                              headers={"Authorization": f"Bearer {cookie}"}, timeout=10)
            assert again.status_code == 200 and reg in again.text, again.text
    finally:
        assert_stopped_cleanly(up, ports, state_root)
