"""Which providers send: an explicit SMS_PROVIDER / EMAIL_PROVIDER, else the credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.settings import ProviderConfigError, Settings
from tests.conftest import reset_process_state

pytest_plugins = ["tests.relay_helpers"]

REPO = Path(__file__).resolve().parents[1]
TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "tw-token",
          "twilio_from_number": "+15005550006"}
RESEND = {"resend_api_key": "re_key", "email_from": "Lone Star <r@lonestar.test>"}
LIVE_TWILIO, LIVE_RESEND = "twilio (live)", "resend (live)"
CONSOLE = "console (prints, sends nothing)"


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No regnotify variable from the environment reaches Settings."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    yield


@pytest.mark.parametrize(("values", "sms", "email"), [
    ({}, "console", "console"),
    (TWILIO, "twilio", "console"),
    ({**TWILIO, "twilio_from_number": None, "twilio_messaging_service_sid": "MG" + "1" * 32},
     "twilio", "console"),
    (RESEND, "console", "resend"),
    ({**TWILIO, **RESEND}, "twilio", "resend"),
    # Explicit settings win over the credentials.
    ({**TWILIO, **RESEND, "sms_provider": "console", "email_provider": "console"},
     "console", "console"),
    # EMAIL_FROM alone is no credential: the console prints it too.
    ({"email_from": "a@b.test"}, "console", "console"),
])
def test_the_credentials_choose_the_provider(no_env, values, sms, email):
    chosen = settings(**values)
    assert (chosen.sms_provider_name(), chosen.email_provider_name()) == (sms, email)


@pytest.mark.parametrize(("values", "channel", "named", "not_named"), [
    ({"twilio_account_sid": TWILIO["twilio_account_sid"]}, "sms",
     ["TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"], ["TWILIO_ACCOUNT_SID"]),
    ({**TWILIO, "twilio_from_number": None}, "sms",
     ["TWILIO_FROM_NUMBER (or TWILIO_MESSAGING_SERVICE_SID)"], ["TWILIO_AUTH_TOKEN"]),
    ({"twilio_auth_token": "tw-token"}, "sms", ["TWILIO_ACCOUNT_SID"], []),
    ({"sms_provider": "twilio"}, "sms", ["SMS_PROVIDER=twilio", "TWILIO_ACCOUNT_SID"], []),
    ({"resend_api_key": "re_key"}, "email", ["EMAIL_FROM"], []),
    ({"email_provider": "resend", "email_from": "a@b.test"}, "email",
     ["EMAIL_PROVIDER=resend", "RESEND_API_KEY"], ["EMAIL_FROM"]),
])
def test_half_filled_credentials_are_an_error_naming_what_is_missing(
    no_env, values, channel, named, not_named
):
    chosen = settings(**values)
    name = chosen.sms_provider_name if channel == "sms" else chosen.email_provider_name
    with pytest.raises(ProviderConfigError) as caught:
        name()
    message = str(caught.value)
    assert "\n" not in message and "console" in message
    for text in named:
        assert text in message
    missing = message.split(" but ", 1)[1].split(":", 1)[0]
    for text in not_named:
        assert text not in missing
    assert "tw-token" not in message and "re_key" not in message


def test_a_copied_env_example_with_keys_filled_in_sends_for_real(no_env, tmp_path):
    # The user's path: copy .env.example, fill in Twilio's and Resend's keys.
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    assert "\nSMS_PROVIDER=" not in text and "\nEMAIL_PROVIDER=" not in text
    env_file = tmp_path / ".env"
    env_file.write_text(text + "\n".join([
        f"TWILIO_ACCOUNT_SID={TWILIO['twilio_account_sid']}",
        "TWILIO_AUTH_TOKEN=tw-token", "TWILIO_FROM_NUMBER=+15005550006",
        "RESEND_API_KEY=re_key", 'EMAIL_FROM="Lone Star <r@lonestar.test>"', ""]))
    chosen = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert (chosen.sms_provider_name(), chosen.email_provider_name()) == ("twilio", "resend")


def test_the_registry_builds_the_chosen_providers(no_env, monkeypatch):
    from tasks.providers.registry import email_provider, sms_provider
    from tasks.providers.resend_email import ResendEmail
    from tasks.providers.twilio_sms import TwilioSms

    for name, value in {**TWILIO, **RESEND}.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.chdir(REPO.parent)  # no .env
    reset_process_state()
    try:
        assert isinstance(sms_provider()._inner, TwilioSms)  # type: ignore[attr-defined]
        assert isinstance(email_provider()._inner, ResendEmail)  # type: ignore[attr-defined]
    finally:
        monkeypatch.undo()
        reset_process_state()


def test_banner_line_says_which_providers_are_live(no_env):
    from tasks.providers.registry import banner_line, provider_report

    assert banner_line(settings(**TWILIO)) == f"sms: {LIVE_TWILIO}, email: {CONSOLE}"
    assert banner_line(settings(**RESEND)) == f"sms: {CONSOLE}, email: {LIVE_RESEND}"
    report = provider_report(settings(resend_api_key="re_key"))
    assert report["sms"] == CONSOLE and report["email"].startswith("misconfigured: ")
    with pytest.raises(ProviderConfigError):
        banner_line(settings(resend_api_key="re_key"))


@pytest.mark.parametrize("command", [["worker"], ["up", "--state-dir", "state"]])
def test_worker_and_up_refuse_half_filled_credentials_in_one_line(tmp_path, command):
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update({"TWILIO_ACCOUNT_SID": TWILIO["twilio_account_sid"], "PYTHONPATH": str(REPO),
                # Never reached: the providers are checked first.
                "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    result = subprocess.run([sys.executable, "-m", "tasks.cli", *command], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TWILIO_AUTH_TOKEN" in lines[0] and "SMS_PROVIDER=console" in lines[0]
    assert not (tmp_path / "state").exists()  # refused before starting anything


def test_healthz_says_which_providers_are_live(relay_client):
    live = relay_client(**TWILIO, **RESEND).get("/healthz")
    assert live.status_code == 200
    assert live.json()["providers"] == {"sms": LIVE_TWILIO, "email": LIVE_RESEND}

    # The relay's own settings: a Twilio auth token (for signatures) and nothing else.
    half = relay_client().get("/healthz")
    assert half.status_code == 200  # the relay itself is fine; the report says what is wrong
    providers = half.json()["providers"]
    assert providers["email"] == CONSOLE
    assert providers["sms"].startswith("misconfigured: ")
    assert "TWILIO_ACCOUNT_SID" in providers["sms"]

    console = relay_client(sms_provider="console").get("/healthz").json()["providers"]
    assert console == {"sms": CONSOLE, "email": CONSOLE}
