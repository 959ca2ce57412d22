"""Configuration from the environment (and `.env` when present)."""

from __future__ import annotations

import os
from functools import cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Written by `regnotify up` (relative to the folder it runs in).
UP_ENV_FILE = ".regnotify/up.env"


class Settings(BaseSettings):
    """Every setting regnotify reads; names are the environment variables of DESIGN.md."""

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
    # Provider requests per second, shared by every worker (see README,
    # "Rate limits"). Resend: the documented default team limit is 2
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

    @field_validator("twilio_api_base_url", "resend_api_base_url", "relay_public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def sms_provider_name(self) -> str:
        """'twilio' when chosen or when Twilio credentials are present, else 'console'."""
        if self.sms_provider:
            return self.sms_provider
        if self.twilio_account_sid and self.twilio_auth_token:
            return "twilio"
        return "console"

    def email_provider_name(self) -> str:
        """'resend' when chosen or when a Resend key is present, else 'console'."""
        if self.email_provider:
            return self.email_provider
        return "resend" if self.resend_api_key else "console"

    # Relay
    relay_listen: bool = True
    # auto: tick on our own only when the database has no pg_cron job to do it.
    relay_self_tick: Literal["auto", "on", "off"] = "auto"
    relay_tick_interval_s: float = Field(default=5.0, gt=0)
    relay_max_body_bytes: int = Field(default=65536, ge=256)
    relay_health_timeout_s: float = Field(default=2.0, gt=0)
    relay_reconnect_max_s: float = Field(default=15.0, gt=0)


@cache
def get_settings() -> Settings:
    """The process's settings, read once.

    REGNOTIFY_IGNORE_ENV_FILES=1 reads the environment only (`regnotify bench`
    sets it, so a .env in the folder cannot point it at another stack).
    """
    if os.environ.get("REGNOTIFY_IGNORE_ENV_FILES") == "1":
        return Settings(_env_file=None)  # type: ignore[call-arg]
    return Settings()
