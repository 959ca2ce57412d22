"""Configuration from the environment (and `.env` when present)."""

from __future__ import annotations

import ipaddress
import os
from functools import cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.exceptions import ProviderConfigError, RelayConfigError

#: The broker when CELERY_BROKER_URL is unset: a Redis on this machine.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"

#: Written by `regnotify up` (relative to the folder it runs in).
UP_ENV_FILE = ".regnotify/up.env"


class Settings(BaseSettings):
    """Every setting regnotify reads; each is the environment variable of its name in capitals."""

    # While `regnotify up` runs, its URLs and generated secrets are in
    # .regnotify/up.env, so other commands in the same folder find the stack.
    # Later files win; real environment variables win over both.
    model_config = SettingsConfigDict(
        env_file=(UP_ENV_FILE, ".env"), extra="ignore", case_sensitive=False
    )

    database_url: str | None = None
    celery_broker_url: str | None = None
    relay_token: SecretStr | None = None
    relay_public_url: str | None = None

    sms_provider: Literal["twilio", "console"] | None = None
    email_provider: Literal["resend", "console"] | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str | None = None
    # Twilio Verify's base URL (the customer sign-in); unset: Twilio's own.
    twilio_verify_base_url: str | None = None

    resend_api_key: SecretStr | None = None
    resend_api_base_url: str | None = None
    resend_webhook_secret: SecretStr | None = None
    email_from: str = "Registrations <registrations@example.com>"

    flower_basic_auth: SecretStr | None = None

    dealership_name: str = "Your dealership"
    portal_url: str | None = None

    # Delivery tuning.
    send_max_retries: int = Field(default=8, ge=0)
    send_retry_backoff_base: float = Field(default=2.0, gt=0)
    send_retry_backoff_max: int = Field(default=600, ge=1, le=3000)
    provider_timeout_s: float = Field(default=10.0, gt=0)
    # Provider requests per second, shared by every worker (see
    # docs/rate-limits.md). Resend: the documented default team limit is 2
    # requests/s (a batch of up to 100 e-mails is one request). Twilio: the
    # API queues messages above a sender's throughput (long code 1 MPS,
    # toll-free 3 MPS, short code 100 MPS, a Messaging Service the sum of its
    # senders); set this to your senders' total MPS to keep Twilio's queue empty.
    twilio_rate_per_s: float = Field(default=10.0, gt=0)
    resend_rate_per_s: float = Field(default=2.0, gt=0)
    # E-mails per POST /emails/batch (Resend allows up to 100).
    resend_batch_size: int = Field(default=100, ge=1, le=100)
    # A Redis for the shared rate limits, tick marker and wake-up when the
    # broker is not Redis (e.g. RabbitMQ). Unset: the broker's Redis, or
    # PostgreSQL when the broker is not Redis.
    coordination_redis_url: str | None = None
    claim_batch_size: int = Field(default=500, ge=1, le=50_000)
    sweep_after_s: int = Field(default=120, ge=5)
    worker_concurrency: int = Field(default=16, ge=1)

    # The API and the customer page (see docs/api.md).
    supabase_url: str | None = None
    # Public by design (browsers carry it); kept out of logs all the same.
    supabase_anon_key: SecretStr | None = None
    supabase_jwt_secret: SecretStr | None = None
    session_secret: SecretStr | None = None
    # Comma-separated origins a browser app may call the API from.
    api_allowed_origins: str = ""
    twilio_verify_service_sid: str | None = None
    # Keys are fetched again on an unknown kid at most this often, so tokens
    # with made-up kids cannot turn the relay into a JWKS flood.
    supabase_jwks_cooldown_s: float = Field(default=30.0, ge=0)
    # Proxies whose X-Forwarded-For names the customer's address (comma-separated
    # IPs or networks, "*" for any): the sign-in limits count per address.
    # Uvicorn's own name for the same thing; the relay leaves it to us.
    forwarded_allow_ips: str = "127.0.0.1,::1"

    @field_validator("twilio_api_base_url", "resend_api_base_url", "relay_public_url",
                     "supabase_url", "portal_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _portal_under_relay(self) -> Settings:
        if not self.portal_url and self.relay_public_url:
            self.portal_url = self.relay_public_url + "/portal"
        return self

    def api_origins(self) -> list[str]:
        """API_ALLOWED_ORIGINS as a list (empty: no cross-origin caller)."""
        return [o.strip().rstrip("/") for o in self.api_allowed_origins.split(",") if o.strip()]

    # Providers: an explicit SMS_PROVIDER / EMAIL_PROVIDER wins; unset, the
    # credentials decide, and half-filled credentials are an error rather
    # than a silent console.
    def sms_provider_name(self) -> str:
        """'twilio' or 'console'; raises ProviderConfigError naming what Twilio lacks."""
        missing = self.twilio_missing()
        if self.sms_provider == "twilio" and missing:
            raise ProviderConfigError(
                f"SMS_PROVIDER=twilio but {_are(missing)} not set: set {_it(missing)}, "
                "or SMS_PROVIDER=console")
        if self.sms_provider:
            return self.sms_provider
        if not missing:
            return "twilio"
        given = [name for name, value in self._twilio_fields() if value]
        if given:
            raise ProviderConfigError(
                f"{_are(given)} set but {_are(missing)} not: set {_it(missing)} "
                "to send texts with Twilio, or SMS_PROVIDER=console")
        return "console"

    def email_provider_name(self) -> str:
        """'resend' or 'console'; raises ProviderConfigError naming what Resend lacks."""
        missing = self.resend_missing()
        if self.email_provider == "resend" and missing:
            raise ProviderConfigError(
                f"EMAIL_PROVIDER=resend but {_are(missing)} not set: set {_it(missing)}, "
                "or EMAIL_PROVIDER=console")
        if self.email_provider:
            return self.email_provider
        if not missing:
            return "resend"
        if self.resend_api_key:
            raise ProviderConfigError(
                "RESEND_API_KEY is set but EMAIL_FROM is not: set EMAIL_FROM to an address "
                "on a domain verified in Resend, or EMAIL_PROVIDER=console")
        return "console"

    def _twilio_fields(self) -> list[tuple[str, object]]:
        return [("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("TWILIO_FROM_NUMBER", self.twilio_from_number),
                ("TWILIO_MESSAGING_SERVICE_SID", self.twilio_messaging_service_sid)]

    def twilio_missing(self) -> list[str]:
        """What Twilio still needs to send a text (empty when complete)."""
        missing = [name for name, value in self._twilio_fields()[:2] if not _filled(value)]
        if not (self.twilio_from_number or self.twilio_messaging_service_sid):
            missing.append("TWILIO_FROM_NUMBER (or TWILIO_MESSAGING_SERVICE_SID)")
        return missing

    def resend_missing(self) -> list[str]:
        """What Resend still needs to send an e-mail (empty when complete)."""
        missing = [] if _filled(self.resend_api_key) else ["RESEND_API_KEY"]
        # EMAIL_FROM has a placeholder default (console output uses it);
        # Resend refuses a domain that is not verified, so it must be given.
        if "email_from" not in self.model_fields_set:
            missing.append("EMAIL_FROM")
        return missing

    # Relay
    relay_listen: bool = True
    # auto: tick on our own only when the database has no pg_cron job to do it.
    relay_self_tick: Literal["auto", "on", "off"] = "auto"
    relay_tick_interval_s: float = Field(default=5.0, gt=0)
    relay_max_body_bytes: int = Field(default=65536, ge=256)
    # Seconds a client may take to send a request's line and headers, and
    # then its body: past either the relay answers 408 and closes.
    relay_header_timeout_s: float = Field(default=10.0, gt=0)
    relay_body_timeout_s: float = Field(default=10.0, gt=0)
    relay_health_timeout_s: float = Field(default=2.0, gt=0)
    relay_reconnect_max_s: float = Field(default=15.0, gt=0)
    # Database connections each relay worker process keeps for the API and the
    # customer page (docs/relay-performance.md): a few per core of the server.
    relay_db_pool_size: int = Field(default=10, ge=1, le=200)
    # Worker processes of `regnotify relay`; unset: what suits the host
    # (tasks/cli/relay.py, default_workers: a core each but one, up to 4).
    relay_workers: int | None = Field(default=None, ge=1, le=64)


def _filled(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _are(names: list[str]) -> str:
    return f"{_and(names)} {'is' if len(names) == 1 else 'are'}"


def _it(names: list[str]) -> str:
    return "it" if len(names) == 1 else "them"


@cache
def get_settings() -> Settings:
    """The process's settings, read once.

    REGNOTIFY_IGNORE_ENV_FILES=1 reads the environment only (`regnotify bench`
    sets it, so a .env in the folder cannot point it at another stack).
    """
    if os.environ.get("REGNOTIFY_IGNORE_ENV_FILES") == "1":
        return Settings(_env_file=None)  # type: ignore[call-arg]
    return Settings()


#: What .env.example's placeholder secrets contain.
PLACEHOLDER_MARK = "change-me"


#: The shortest signing secret accepted: HS256 keys shorter than the hash's
#: 32 bytes fall to an offline guess of the secret from one captured token.
MIN_SECRET_BYTES = 32
#: Secrets that sign tokens: checked whenever something verifies or makes one.
SIGNING_SECRETS = ("session_secret", "supabase_jwt_secret")


def refuse_weak_secrets(settings: Settings) -> None:
    """Refuse a signing secret that is a placeholder or shorter than 32 bytes.

    A token signed with a guessable secret is anyone's token: the check runs
    at start (the relay, `regnotify up`) so the relay never serves with one.
    """
    for name in SIGNING_SECRETS:
        value = getattr(settings, name)
        if value is None or not value.get_secret_value():
            continue
        raw = value.get_secret_value()
        if PLACEHOLDER_MARK in raw:
            raise RelayConfigError(
                f"{name.upper()} is still the change-me placeholder from .env.example: set "
                "it to a secret of your own (python3 -c \"import secrets; "
                "print(secrets.token_urlsafe(32))\")")
        if len(raw.encode("utf-8")) < MIN_SECRET_BYTES:
            raise RelayConfigError(
                f"{name.upper()} is {len(raw.encode('utf-8'))} bytes, under the "
                f"{MIN_SECRET_BYTES} it needs: set a longer random one (python3 -c \"import "
                "secrets; print(secrets.token_urlsafe(32))\")")


def refuse_bad_proxies(settings: Settings) -> None:
    """Refuse a FORWARDED_ALLOW_IPS entry that is neither an address, a network nor `*`."""
    for item in (part.strip() for part in settings.forwarded_allow_ips.split(",")):
        if not item or item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise RelayConfigError(
                f"FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network: list your "
                "proxies' addresses (e.g. 10.0.0.0/8,192.168.1.5), or * if only proxies reach "
                "the relay") from None


def refuse_unsafe_settings(settings: Settings) -> None:
    """What the relay checks at start: signing secrets and trusted proxies."""
    refuse_weak_secrets(settings)
    refuse_bad_proxies(settings)


def refuse_placeholders(settings: Settings, names: tuple[str, ...] = (
        "relay_token", "flower_basic_auth")) -> None:
    """Refuse a secret still holding .env.example's `change-me` placeholder.

    A copied .env.example would otherwise guard the relay and Flower with a
    value printed in the repository.
    """
    for name in names:
        value = getattr(settings, name)
        if value is not None and PLACEHOLDER_MARK in value.get_secret_value():
            raise ProviderConfigError(
                f"{name.upper()} is still the change-me placeholder from .env.example: put a "
                "secret of your own there, or comment the line out (`regnotify up` then makes "
                "one)")
