from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
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
    # Address space of one parser process (its imports map ~350 MiB of it); the corpus's
    # largest documents parse within 1 GiB. The worker's memory limit must hold the worker
    # (~0.9 GiB) plus parse_processes times this.
    parse_max_memory_bytes: int = 1024 * 1024 * 1024
    # Parser processes per worker (each one document at a time, ~190 MiB resident): with two,
    # a large document's parse does not hold up the small documents behind it.
    parse_processes: int = Field(default=2, ge=1)
    # Documents a worker indexes at once: enough that some parse while others embed and that
    # many small documents fill the model's batches together. Each holds its file, its text and
    # a pooled database connection (its advisory lock) until it is done, so at most half the
    # connection pool (DOCUCHAT_DATABASE_POOL_SIZE, twice that with overflow) is used for it.
    documents_in_flight: int = Field(default=8, ge=1)
    # Set to embed through an OpenAI-compatible /v1/embeddings endpoint (OpenAI, vLLM, TEI, ...)
    # instead of the local model. A model of another size needs a new vector store (the
    # collection's vectors have one size).
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_model: str = "text-embedding-3-small"
    # Sent as ``dimensions`` (models that can shorten their vectors honour it).
    embedding_dimensions: int | None = None
    # Concurrent runs of the embedding model, one thread each; unset: one per CPU the process may
    # use. Set it to the pod's CPU limit where that is below the node's CPUs.
    embedding_parallel_runs: int | None = None
    # Texts per run of the local model; unset: the model's default (see MiniLMEmbedder).
    embedding_batch_size: int | None = Field(default=None, ge=1)
    # Search: query embeddings kept (LRU, by query text) so a repeated question skips the model.
    search_cache_size: int = 4096
