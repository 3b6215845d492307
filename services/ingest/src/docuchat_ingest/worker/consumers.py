"""Thin consumers for the worker role: event → indexing service call."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import DocumentDeleted, DocumentUploaded, TenantDeleted
from docuchat_common.events.topics import DOCUMENTS, TENANTS
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.worker.service import IndexingService

DOCUMENTS_GROUP = "ingest.worker"
TENANTS_GROUP = "ingest.worker.tenants"
MAX_DOCUMENTS_AT_ONCE = 8


def register(runtime: ServiceRuntime) -> None:
    def service() -> IndexingService:
        indexing: IndexingService = runtime.state["indexing"]
        return indexing

    async def on_documents(events: list[Any], session: AsyncSession) -> None:
        """Index uploaded documents (a run of them side by side); drop deleted documents'
        points. Events keep their order: an upload and a later delete of the same document
        happen in that order."""
        uploads: list[DocumentUploaded] = []
        for event in events:
            if isinstance(event, DocumentUploaded):
                uploads.append(event)
                continue
            if uploads:
                await service().index_many(uploads, session)
                uploads = []
            if isinstance(event, DocumentDeleted) and event.tenant_id is not None:
                await service().forget_document(event.tenant_id, event.data.document_id)
        if uploads:
            await service().index_many(uploads, session)

    async def on_tenant(event: Any, session: AsyncSession) -> None:
        """A deleted tenant's points leave the index."""
        if isinstance(event, TenantDeleted):
            await service().forget_tenant(event.data.tenant_id)

    runtime.consumers.subscribe_batch(
        DOCUMENTS,
        [DocumentUploaded, DocumentDeleted],
        group=DOCUMENTS_GROUP,
        handler=on_documents,
        # A few documents at a time: enough to fill the model's batches with small documents,
        # few enough that a batch finishes well within the broker's poll interval.
        max_records=MAX_DOCUMENTS_AT_ONCE,
        batch_timeout_ms=100,
    )
    runtime.consumers.subscribe(TENANTS, [TenantDeleted], group=TENANTS_GROUP, handler=on_tenant)
