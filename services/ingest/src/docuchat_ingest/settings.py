from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from docuchat_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_INGEST_", extra="ignore")

    service_name: ClassVar[str] = "ingest"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat_ingest"
