"""Ingest: knowledge bases, documents, the indexing pipeline and retrieval.

Roles: ``api`` serves HTTP and keeps knowledge bases in step with tenants; ``worker`` will
consume document.uploaded (the pipeline); ``all`` is both; ``relay`` only publishes the outbox.
"""

from __future__ import annotations

from pathlib import Path

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentFailed,
    DocumentIndexed,
    DocumentProgressed,
    DocumentUploaded,
    TokensConsumed,
)
from docuchat_common.quota import QuotaGuard
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.blobs import LocalBlobStore
from docuchat_ingest.documents.router import router as documents_router
from docuchat_ingest.knowledge_bases import consumers as kb_consumers
from docuchat_ingest.knowledge_bases.router import router as kb_router
from docuchat_ingest.models import metadata
from docuchat_ingest.pipeline.indexer import DocumentIndexer
from docuchat_ingest.pipeline.sandbox import ParserSandbox
from docuchat_ingest.settings import IngestSettings
from docuchat_ingest.vectorstore import VectorStore
from docuchat_ingest.worker import consumers as worker_consumers
from docuchat_ingest.worker.service import IndexingService

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: IngestSettings | None = None, *, role: str = "all") -> ServiceRuntime:
    settings = settings or IngestSettings()
    api = role in ("all", "api")
    runtime = ServiceRuntime(
        name="ingest" if role != "worker" else "ingest-worker",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[kb_router, documents_router] if api else [],
        publishes=[
            DocumentUploaded,
            DocumentProgressed,
            DocumentIndexed,
            DocumentFailed,
            DocumentDeleted,
            TokensConsumed,
        ],
    )
    runtime.state["blobs"] = LocalBlobStore(settings.blob_dir)
    if api:
        kb_consumers.register(runtime)
        _enforce_quotas(runtime)
    if role in ("all", "worker"):
        worker_consumers.register(runtime)
        _run_pipeline(runtime, settings)
    return runtime


def _vector_store(settings: IngestSettings) -> VectorStore:
    if settings.qdrant_url:
        from docuchat_ingest.vectorstore.qdrant_client_store import QdrantClientStore

        return QdrantClientStore.connect(url=settings.qdrant_url)
    from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore

    return QdrantEdgeStore(settings.vector_dir)


def _run_pipeline(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    """The worker's model and vector store, ready before the first document.uploaded."""
    store = _vector_store(settings)
    sandbox = ParserSandbox(
        timeout_seconds=settings.parse_timeout_seconds,
        max_memory_bytes=settings.parse_max_memory_bytes,
    )

    async def start(_: ServiceRuntime) -> None:
        from docuchat_ingest.embedding.minilm import MiniLMEmbedder

        await store.ensure_collection()
        await sandbox.warm()
        runtime.state["vector_store"] = store
        runtime.state["indexing"] = IndexingService(
            database=runtime.database,
            outbox=runtime.outbox,
            blobs=runtime.state["blobs"],
            indexer=DocumentIndexer(
                MiniLMEmbedder(),
                store,
                max_pages=settings.max_pages,
                sandbox=sandbox,
            ),
            store=store,
        )

    async def stop(_: ServiceRuntime) -> None:
        sandbox.close()
        await store.close()

    runtime.on_start(start)
    runtime.on_stop(stop)


def _enforce_quotas(runtime: ServiceRuntime) -> None:
    """The tenant quota state (from usage's quota.changed), in memory before serving."""
    guard = QuotaGuard(runtime.settings.kafka_bootstrap_servers, service=runtime.name)
    runtime.state["quota"] = guard
    runtime.health.add("quota", guard.check_ready)

    async def start(_: ServiceRuntime) -> None:
        await guard.start()

    async def stop(_: ServiceRuntime) -> None:
        await guard.stop()

    runtime.on_start(start)
    runtime.on_stop(stop)
