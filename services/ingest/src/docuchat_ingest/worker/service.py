"""The worker's side of a document: queued → processing → indexed | failed.

The message is the unit of work: the final state, document.indexed (or .failed) and the
embedding tokens for usage are committed together with the consumer's claim on the event, so a
worker that dies mid-document leaves the event unclaimed and the next delivery starts over
(point ids are deterministic: nothing is duplicated). The indexing itself runs outside any
transaction (the consumer's ``SlowHandler``: it holds the event by an advisory lock meanwhile);
progress is committed as it happens, in short transactions of its own, so clients watching the
document see it move.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.db import Database
from docuchat_common.events.catalog import (
    DocumentFailed,
    DocumentFailedData,
    DocumentIndexed,
    DocumentIndexedData,
    DocumentProgressed,
    DocumentProgressedData,
    DocumentUploaded,
    TokensConsumed,
    TokensConsumedData,
)
from docuchat_common.events.envelope import Event
from docuchat_common.events.outbox import Outbox
from docuchat_common.logging import get_logger
from docuchat_ingest.blobs import BlobStore, blob_key
from docuchat_ingest.knowledge_bases.schemas import KnowledgeBaseSettings
from docuchat_ingest.models import Document
from docuchat_ingest.parsing import ParseError
from docuchat_ingest.pipeline.indexer import DocumentIndexer, DocumentToIndex
from docuchat_ingest.vectorstore import VectorStore
from docuchat_ingest.worker.repository import IndexingRepository

log = get_logger(__name__)
SOURCE = "ingest"


@dataclass(frozen=True, slots=True)
class IndexingOutcome:
    """What indexing one document ends in: its new state and the events announcing it."""

    document: Document
    values: dict[str, Any]
    events: tuple[Event[Any], ...]


class IndexingService:
    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        blobs: BlobStore,
        indexer: DocumentIndexer,
        store: VectorStore,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.blobs = blobs
        self.indexer = indexer
        self.store = store

    async def index(self, event: DocumentUploaded) -> IndexingOutcome | None:
        """Index the document (outside any transaction but the short ones of its progress):
        its outcome, for :meth:`record`, or None if the document is gone."""
        async with self.database.transaction() as session:
            started = None
            if event.tenant_id is not None:
                started = await IndexingRepository(session).start_processing(
                    event.tenant_id, event.data.document_id
                )
            if started is None:
                log.info(
                    "document gone before indexing; skipped",
                    document_id=str(event.data.document_id),
                )
                return None
            document, kb_settings = started
            settings = KnowledgeBaseSettings.model_validate(kb_settings)
            await self.outbox.add(session, self._progressed(document, 0.0))

        async def on_progress(value: float) -> None:
            await self._progress(document, value)

        try:
            data = await self.blobs.get(document.blob_key)
            indexed = await self.indexer.index(
                DocumentToIndex(
                    tenant_id=document.tenant_id,
                    knowledge_base_id=document.knowledge_base_id,
                    document_id=document.id,
                    filename=document.filename,
                    media_type=document.media_type,
                    data=data,
                ),
                chunk_tokens=settings.chunk_size,
                overlap_tokens=settings.chunk_overlap,
                on_progress=on_progress,
            )
        except ParseError as exc:
            return self._failure(document, exc.code, str(exc))
        except Exception as exc:  # never a crash loop: the user sees why, and can reindex
            log.exception("indexing failed", document_id=str(document.id))
            return self._failure(document, "indexing_error", type(exc).__name__)
        log.info(
            "document indexed",
            document_id=str(document.id),
            chunks=indexed.chunks,
            pages=indexed.pages,
        )
        return IndexingOutcome(
            document,
            {
                "status": "indexed",
                "progress": 1.0,
                "pages": indexed.pages,
                "chunks": indexed.chunks,
                "embedding_tokens": indexed.embedding_tokens,
                "error_code": None,
                "error": None,
                "indexed_at": datetime.now(UTC),
            },
            (
                DocumentIndexed(
                    tenant_id=document.tenant_id,
                    source=SOURCE,
                    data=DocumentIndexedData(
                        document_id=document.id,
                        knowledge_base_id=document.knowledge_base_id,
                        user_id=document.user_id,
                        pages=indexed.pages,
                        chunks=indexed.chunks,
                        size_bytes=document.size_bytes,
                        embedding_tokens=indexed.embedding_tokens,
                        embedding_model=indexed.embedding_model,
                    ),
                ),
                TokensConsumed(
                    tenant_id=document.tenant_id,
                    source=SOURCE,
                    data=TokensConsumedData(
                        user_id=document.user_id,
                        kind="embedding",
                        model=indexed.embedding_model,
                        embedding_tokens=indexed.embedding_tokens,
                        reference=str(document.id),
                    ),
                ),
            ),
        )

    async def record(self, session: AsyncSession, outcome: IndexingOutcome) -> None:
        """The outcome, in the caller's transaction: the one that claims the event."""
        await self._record(session, outcome.document, outcome.values, *outcome.events)

    async def _record(
        self,
        session: AsyncSession,
        document: Document,
        values: dict[str, Any],
        *events: Event[Any],
    ) -> None:
        """The document's new state and the events that announce it, in one transaction."""
        await IndexingRepository(session).set_state(document.id, values)
        await self.outbox.add(session, *events)

    async def _progress(self, document: Document, progress: float) -> None:
        async with self.database.transaction() as session:
            await self._record(
                session,
                document,
                {"status": "processing", "progress": progress},
                self._progressed(document, progress),
            )

    @staticmethod
    def _progressed(document: Document, progress: float) -> DocumentProgressed:
        """document.progressed while it is processing (its outcome is another event)."""
        return DocumentProgressed(
            tenant_id=document.tenant_id,
            source=SOURCE,
            data=DocumentProgressedData(
                document_id=document.id,
                knowledge_base_id=document.knowledge_base_id,
                status="processing",
                progress=round(progress, 3),
            ),
        )

    @staticmethod
    def _failure(document: Document, code: str, message: str) -> IndexingOutcome:
        log.info("document failed", document_id=str(document.id), code=code)
        return IndexingOutcome(
            document,
            {"status": "failed", "error_code": code, "error": message[:2000]},
            (
                DocumentFailed(
                    tenant_id=document.tenant_id,
                    source=SOURCE,
                    data=DocumentFailedData(
                        document_id=document.id,
                        knowledge_base_id=document.knowledge_base_id,
                        code=code,
                        error=message[:2000],
                    ),
                ),
            ),
        )

    async def forget_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self.store.delete_document(tenant_id, document_id)
        await self.blobs.delete(blob_key(tenant_id, document_id))

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        await self.store.delete_tenant(tenant_id)
        await self.blobs.delete_all(str(tenant_id))
