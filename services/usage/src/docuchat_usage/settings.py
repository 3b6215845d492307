from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from docuchat_common.settings import ServiceSettings


class UsageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_USAGE_", extra="ignore")

    service_name: ClassVar[str] = "usage"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat_usage"
    default_plan: str = "free"
    # How often to look for tenants whose day or month ended (their quotas lift).
    quota_reset_interval_seconds: float = 30.0
