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
