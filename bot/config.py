"""Process configuration from environment variables, validated once at start-up."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from providers.mail import parse_smtp_url
from storage.db import normalise_url

SLACK_DEFAULT_API_URL = "https://slack.com/api/"
MIN_WEBHOOK_TOKEN_LENGTH = 24
_URL_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved URL characters: one path segment, as typed
_MAIL_FROM = re.compile(r"(?:[^<>@\r\n]{1,100} )?<?[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>?")


class ConfigError(Exception):
    """Raised with one human-readable line per missing or bad setting (never their values)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = SLACK_DEFAULT_API_URL
    finance_channel: str | None = None
    escalation_channel: str | None = None
    review_channel: str | None = None
    dialnexa_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    moonclerk_api_key: SecretStr | None = None
    moonclerk_api_url: str = "https://api.moonclerk.com"
    poof_api_key: SecretStr | None = None
    poof_api_url: str = "https://www.poof.io"
    poof_webhook_secret: SecretStr | None = None
    moonclerk_webhook_token: SecretStr | None = None
    # Stripe (providers.stripe): a secret or restricted key, the API base (stand-ins), and the webhook
    # endpoint's signing secrets, comma-separated while rotating.
    stripe_api_key: SecretStr | None = None
    stripe_api_url: str = "https://api.stripe.com"
    stripe_webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # How long a provider call may take before its outcome counts as unknown.
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    database_url: str = "sqlite:///finance-desk.db"
    # Spacing between posts to one channel; Slack allows about one message a second per channel.
    slack_post_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    finance_desk_policy: Path | None = None
    # Email to customers (bot.mail): smtp://user:password@host:587 (STARTTLS), smtps://…:465 (TLS), or a
    # plain smtp://127.0.0.1:25 for a loopback relay only. A secret: it carries the password.
    smtp_url: SecretStr | None = None
    mail_from: str | None = None
    # Bearer token GET /metrics asks for; unset, /metrics is open (keep it off the public network).
    metrics_token: SecretStr | None = None

    @field_validator("dialnexa_webhook_secrets", "stripe_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("slack_api_url", "moonclerk_api_url", "poof_api_url", "stripe_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: str) -> str:
        try:
            backend = make_url(normalise_url(value)).get_backend_name()
        except ArgumentError:
            # Not echoed: a database URL may carry a password.
            raise ValueError("not a database URL; use sqlite:///path/to/file.db or postgresql://user@host/db") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{backend} is not supported; use sqlite:/// or postgresql://")
        return value

    @field_validator("moonclerk_webhook_token")
    @classmethod
    def _webhook_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # MoonClerk signs nothing: this token in the URL path is all that keeps strangers out.
        if value is None:
            return value
        token = value.get_secret_value()
        if len(token) < MIN_WEBHOOK_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_WEBHOOK_TOKEN_LENGTH} characters (it is the only thing "
                             "guarding /webhooks/moonclerk/...); generate one with: openssl rand -hex 24")
        if not _URL_TOKEN.fullmatch(token):
            raise ValueError("may hold only letters, digits, '-', '_', '.' and '~' (it is part of the webhook URL)")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_smtp_url(value.get_secret_value())  # its ValueError never quotes the URL
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from_shape(cls, value: str | None) -> str | None:
        if value is not None and not _MAIL_FROM.fullmatch(value.strip()):
            raise ValueError("must be an email address such as billing@example.com, optionally 'Name <address>'")
        return value.strip() if value is not None else None

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None

    def webhook_secrets(self) -> list[bytes]:
        return [secret.get_secret_value().encode() for secret in self.dialnexa_webhook_secrets]


def read_settings() -> Settings:
    """Settings from the environment, each bad value one ConfigError line (never the value itself)."""
    try:
        return Settings()
    except ValidationError as exc:
        # Pydantic's own message would echo the input; a secret must never reach a terminal or log.
        raise ConfigError(
            [f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}"
             for err in exc.errors()]
        ) from None


def load_settings(*, require_slack: bool = False, socket_mode: bool = False, http: bool = True) -> Settings:
    """Settings for a running app: read_settings() plus what it needs to run, every problem listed at
    once (a bad value does not hide a missing one). `http=False` for processes that receive nothing
    from Slack (`worker`), which need no signing secret."""
    settings: Settings | None = None
    problems: list[str] = []
    try:
        settings = read_settings()
    except ConfigError as exc:
        problems = list(exc.problems)

    def missing(name: str) -> bool:
        if settings is not None:
            return getattr(settings, name) in (None, [])
        # Settings could not be built: judge by the environment, unless the value is there but bad.
        reported = any(problem.startswith(f"{name.upper()}:") for problem in problems)
        return not reported and not any(key.upper() == name.upper() and value for key, value in os.environ.items())

    if missing("dialnexa_webhook_secrets"):
        problems.append("DIALNEXA_WEBHOOK_SECRETS: missing (comma-separated list: current secret first)")
    if require_slack or socket_mode or not missing("slack_bot_token"):
        needed = ["slack_bot_token", "finance_channel"]
        if http and not socket_mode:
            needed.insert(1, "slack_signing_secret")
        for name in needed:
            if missing(name):
                problems.append(f"{name.upper()}: missing (needed to post cards to Slack)")
    if settings is not None and (settings.smtp_url is None) != (settings.mail_from is None):
        problems.append("SMTP_URL and MAIL_FROM: set both to email customers, or neither")
    if socket_mode and missing("slack_app_token"):
        problems.append("SLACK_APP_TOKEN: missing (Socket Mode needs an xapp- token with connections:write)")
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings
