"""Which provider each channel uses, built once per process from the settings."""

from __future__ import annotations

import threading

from tasks.log_hygiene import quiet_chatty_libraries
from tasks.providers.base import EmailProvider, SmsProvider
from tasks.providers.console import ConsoleEmail, ConsoleSms
from tasks.providers.timed import TimedProvider
from tasks.settings import ProviderConfigError, Settings, get_settings

# Whoever can build a provider can log its requests: quiet the libraries first.
quiet_chatty_libraries()

#: How each provider's name reads where `up`, `worker` and /healthz say what is live.
DESCRIPTIONS = {
    "twilio": "twilio (live)",
    "resend": "resend (live)",
    "console": "console (prints, sends nothing)",
}

_lock = threading.Lock()
_sms: SmsProvider | None = None
_email: EmailProvider | None = None


def sms_provider() -> SmsProvider:
    """Twilio when configured, else the console."""
    global _sms
    with _lock:
        if _sms is None:
            settings = get_settings()
            if settings.sms_provider_name() == "twilio":
                from tasks.providers.twilio_sms import TwilioSms

                _sms = TwilioSms(settings)
            else:
                _sms = ConsoleSms()
            _sms = TimedProvider(_sms)  # type: ignore[assignment]
        return _sms


def email_provider() -> EmailProvider:
    """Resend when configured, else the console."""
    global _email
    with _lock:
        if _email is None:
            settings = get_settings()
            if settings.email_provider_name() == "resend":
                from tasks.providers.resend_email import ResendEmail

                _email = ResendEmail(settings)
            else:
                _email = ConsoleEmail()
            _email = TimedProvider(_email)  # type: ignore[assignment]
        return _email


def reset_providers() -> None:
    """Forget the providers so the next call reads the settings again (tests, reconfiguration)."""
    global _sms, _email
    with _lock:
        _sms = None
        _email = None


def chosen_providers(settings: Settings | None = None) -> dict[str, str]:
    """{'sms': ..., 'email': ...} as DESCRIPTIONS word them; raises ProviderConfigError."""
    settings = settings or get_settings()
    return {"sms": DESCRIPTIONS[settings.sms_provider_name()],
            "email": DESCRIPTIONS[settings.email_provider_name()]}


def provider_report(settings: Settings | None = None) -> dict[str, str]:
    """Like chosen_providers, but a channel that cannot work reads 'misconfigured: why'."""
    settings = settings or get_settings()
    report: dict[str, str] = {}
    for channel, name in (("sms", settings.sms_provider_name),
                          ("email", settings.email_provider_name)):
        try:
            report[channel] = DESCRIPTIONS[name()]
        except ProviderConfigError as exc:
            report[channel] = f"misconfigured: {exc}"
    return report


def banner_line(settings: Settings | None = None) -> str:
    """'sms: twilio (live), email: console (prints, sends nothing)'; raises ProviderConfigError."""
    chosen = chosen_providers(settings)
    return f"sms: {chosen['sms']}, email: {chosen['email']}"
