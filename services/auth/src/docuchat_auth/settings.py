from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from docuchat_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_AUTH_", extra="ignore")

    service_name: ClassVar[str] = "auth"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat_auth"

    # Dev and tests: keys are generated into this directory on first start.
    keys_dir: Path = Path(".docuchat/auth-keys")
    # Production: PEM private keys from a secret, newest last (the last one signs; all verify).
    signing_keys_pem: SecretStr | None = None
    access_token_ttl_seconds: int = 15 * 60
    internal_token_ttl_seconds: int = 60
    refresh_token_ttl_days: int = 30
    password_min_length: int = 10

    # Email: the dev adapter writes to a file; set smtp_host to send for real.
    mail_file: Path = Path(".docuchat/mail/outbox.jsonl")
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "DocuChat <no-reply@docuchat.local>"
    # Where links in emails point (password reset, invitations).
    public_url: str = "http://localhost:8080"

    # One-time secrets.
    email_code_ttl_seconds: int = 10 * 60
    email_code_max_attempts: int = 5
    password_reset_ttl_seconds: int = 30 * 60
    invite_ttl_seconds: int = 7 * 24 * 3600

    # Brute force: per account and per client IP, counted in Postgres (shared by replicas).
    max_failures_per_account: int = 5
    max_failures_per_ip: int = 50
    failure_window_seconds: int = 15 * 60
    lockout_seconds: int = 15 * 60
    # Codes and reset links one address may be sent per window.
    max_mails_per_account: int = 5

    # API keys and access tokens' holders: how long a resolved key, or a user's membership of
    # its tenant, may be trusted without a database read. Revoking a key, removing a member or
    # deleting a tenant takes effect within this bound (the issue asks for 5 s).
    api_key_cache_seconds: float = 2.0
