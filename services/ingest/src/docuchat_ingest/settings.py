from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from docuchat_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_INGEST_", extra="ignore")

    service_name: ClassVar[str] = "ingest"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat_ingest"

    # Original files (dev: a directory; production: a volume shared by API and workers).
    blob_dir: Path = Path(".docuchat/blobs")
    # The embedded vector store's shard (one process owns it).
    vector_dir: Path = Path(".docuchat/vectors")
    # Set to use a Qdrant server instead of the embedded shard.
    qdrant_url: str | None = None
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pages: int = 500
    # ZIP uploads: each entry is also held to max_upload_bytes (and the plan's file size).
    archive_max_entries: int = 100
    archive_max_total_bytes: int = 100 * 1024 * 1024
    # Expanded / compressed size of one entry; text rarely passes 20, bombs reach thousands.
    archive_max_ratio: float = 200.0
    # Per-document parsing budget (a separate process): beyond it the document fails.
    parse_timeout_seconds: float = 120.0
    parse_max_memory_bytes: int = 2 * 1024 * 1024 * 1024
    # Search: query embeddings kept (LRU, by query text) so a repeated question skips the model.
    search_cache_size: int = 4096
