"""Ingest: knowledge bases, documents, the indexing pipeline and retrieval.

Roles: ``api`` serves HTTP and keeps knowledge bases in step with tenants; ``worker``
consumes document.uploaded (the pipeline); ``all`` is both; ``relay`` only publishes the outbox.

Search is served by whichever process owns a vector store, with the query model beside it:
``all`` and ``worker`` always (the embedded qdrant-edge shard belongs to exactly one process),
``api`` too when the store is a Qdrant server (``DOCUCHAT_INGEST_QDRANT_URL``), which any
number of replicas may query.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentFailed,
    DocumentIndexed,
    DocumentProgressed,
    DocumentUploaded,
    KnowledgeBaseDeleted,
    TokensConsumed,
)
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.blobs import LocalBlobStore
from docuchat_ingest.documents.router import router as documents_router
from docuchat_ingest.embedding import Embedder
from docuchat_ingest.embedding.coalescing import CoalescingEmbedder
from docuchat_ingest.embedding.sparse import SparseEncoder
from docuchat_ingest.knowledge_bases import consumers as kb_consumers
from docuchat_ingest.knowledge_bases.router import router as kb_router
from docuchat_ingest.models import metadata
from docuchat_ingest.parsing import load_parsers
from docuchat_ingest.pipeline.indexer import DocumentIndexer
from docuchat_ingest.pipeline.sandbox import ParserSandbox
from docuchat_ingest.search.router import router as search_router
from docuchat_ingest.search.service import QueryEncoder, Retrieval
from docuchat_ingest.settings import IngestSettings
from docuchat_ingest.vectorstore import VectorStore
from docuchat_ingest.worker import consumers as worker_consumers
from docuchat_ingest.worker.service import IndexingService

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: IngestSettings | None = None, *, role: str = "all") -> ServiceRuntime:
    settings = settings or IngestSettings()
    api = role in ("all", "api")
    worker = role in ("all", "worker")
    owns_store = worker or (api and settings.qdrant_url is not None)
    runtime = ServiceRuntime(
        name="ingest" if role != "worker" else "ingest-worker",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[
            *([kb_router, documents_router] if api else []),
            *([search_router] if owns_store else []),
        ],
        publishes=[
            DocumentUploaded,
            DocumentProgressed,
            DocumentIndexed,
            DocumentFailed,
            DocumentDeleted,
            KnowledgeBaseDeleted,
            TokensConsumed,
        ],
    )
    runtime.state["blobs"] = LocalBlobStore(settings.blob_dir)
    if api:
        kb_consumers.register(runtime)
        runtime.enforce_quotas()
        _load_upload_probe(runtime)
    if owns_store:
        _open_store(runtime, settings)
    if worker:
        worker_consumers.register(runtime)
        _run_pipeline(runtime, settings)
    return runtime


def _vector_store(settings: IngestSettings, dimension: int) -> VectorStore:
    if settings.qdrant_url:
        from docuchat_ingest.vectorstore.qdrant_client_store import QdrantClientStore

        return QdrantClientStore.connect(url=settings.qdrant_url, dimension=dimension)
    from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore

    return QdrantEdgeStore(settings.vector_dir, dimension=dimension)


def build_embedder(settings: IngestSettings) -> Embedder:
    """The local model by default; an OpenAI-compatible endpoint when one is configured."""
    if settings.embedding_base_url:
        from docuchat_ingest.embedding.openai_compat import OpenAIEmbedder

        key = settings.embedding_api_key
        return CoalescingEmbedder(
            # Documents indexed side by side share requests (fewer, fuller calls).
            OpenAIEmbedder(
                model=settings.embedding_model,
                base_url=settings.embedding_base_url,
                api_key=key.get_secret_value() if key else None,
                dimensions=settings.embedding_dimensions,
            )
        )
    from docuchat_ingest.embedding.minilm import MiniLMEmbedder

    # Batches the concurrent calls of documents indexed side by side itself.
    return MiniLMEmbedder(
        parallel_runs=settings.embedding_parallel_runs, batch_size=settings.embedding_batch_size
    )


def _open_store(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    """The vector store, the embedding model and the BM25 encoder this process owns (for
    indexing and for search), open before anything is served or consumed."""

    async def start(_: ServiceRuntime) -> None:
        embedder = build_embedder(settings)
        store = _vector_store(settings, embedder.dimension)
        await store.ensure_collection()
        sparse = SparseEncoder()
        runtime.state["vector_store"] = store
        runtime.state["embedder"] = embedder
        runtime.state["sparse_encoder"] = sparse
        runtime.state["retrieval"] = Retrieval(
            store=store,
            queries=QueryEncoder(embedder, sparse, cache_size=settings.search_cache_size),
        )

    async def stop(_: ServiceRuntime) -> None:
        store: VectorStore | None = runtime.state.get("vector_store")
        if store is not None:
            await store.close()
        embedder = runtime.state.get("embedder")
        close = getattr(embedder, "aclose", None)
        if close is not None:
            await close()

    async def vector_store_ready() -> None:
        store: VectorStore | None = runtime.state.get("vector_store")
        if store is None:
            raise RuntimeError("the vector store is not open yet")
        await store.check_ready()

    runtime.health.add("vector_store", vector_store_ready)
    runtime.on_start(start)
    runtime.on_stop(stop)


def _run_pipeline(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    """The worker's parser, ready before the first document.uploaded (runs after _open_store)."""
    sandbox = ParserSandbox(
        timeout_seconds=settings.parse_timeout_seconds,
        max_memory_bytes=settings.parse_max_memory_bytes,
        processes=settings.parse_processes,
    )

    async def start(_: ServiceRuntime) -> None:
        await sandbox.warm()
        store = runtime.state["vector_store"]
        runtime.state["indexing"] = IndexingService(
            database=runtime.database,
            outbox=runtime.outbox,
            blobs=runtime.state["blobs"],
            indexer=DocumentIndexer(
                runtime.state["embedder"],
                store,
                max_pages=settings.max_pages,
                sandbox=sandbox,
                sparse=runtime.state["sparse_encoder"],
            ),
            store=store,
        )

    async def stop(_: ServiceRuntime) -> None:
        sandbox.close()

    runtime.on_start(start)
    runtime.on_stop(stop)


def _load_upload_probe(runtime: ServiceRuntime) -> None:
    """Uploads open PDFs up front (an encrypted or corrupt one is a 422 at once): load PyMuPDF
    at start (about a CPU-second), not during the first PDF upload."""

    async def start(_: ServiceRuntime) -> None:
        await asyncio.to_thread(load_parsers)

    runtime.on_start(start)
