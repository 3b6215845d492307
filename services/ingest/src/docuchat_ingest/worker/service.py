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

from sqlalchemy import update
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
from docuchat_ingest.models import Document, KnowledgeBase
from docuchat_ingest.parsing import ParseError
from docuchat_ingest.pipeline.indexer import DocumentIndexer, DocumentToIndex
from docuchat_ingest.vectorstore import VectorStore

log = get_logger(__name__)
SOURCE = "ingest"
# document.progressed at least every 10%.
PROGRESS_STEP = 0.1


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
            document = await session.get(Document, event.data.document_id)
            if document is None or document.tenant_id != event.tenant_id:
                log.info(
                    "document gone before indexing; skipped",
                    document_id=str(event.data.document_id),
                )
                return None
            kb = await session.get(KnowledgeBase, document.knowledge_base_id)
            settings = KnowledgeBaseSettings.model_validate(kb.settings if kb else {})
            await self._record_progress(session, document, "processing", 0.0)
        last_reported = 0.0

        async def on_progress(value: float) -> None:
            # The last step is not published on its own: document.indexed, committed with the
            # claim on the event, carries progress 1.0 (most documents are one or two slices,
            # and every progress is a transaction, an outbox row and a message for each
            # consumer of the topic).
            nonlocal last_reported
            if value - last_reported >= PROGRESS_STEP and value < 1.0:
                last_reported = value
                await self._progress(document, "processing", value)

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
        await session.execute(update(Document).where(Document.id == document.id).values(**values))
        await self.outbox.add(session, *events)

    async def _progress(self, document: Document, status: str, progress: float) -> None:
        async with self.database.transaction() as session:
            await self._record_progress(session, document, status, progress)

    async def _record_progress(
        self, session: AsyncSession, document: Document, status: str, progress: float
    ) -> None:
        await self._record(
            session,
            document,
            {"status": status, "progress": progress},
            DocumentProgressed(
                tenant_id=document.tenant_id,
                source=SOURCE,
                data=DocumentProgressedData(
                    document_id=document.id,
                    knowledge_base_id=document.knowledge_base_id,
                    status=status,
                    progress=round(progress, 3),
                ),
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
