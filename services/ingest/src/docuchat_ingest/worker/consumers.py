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
# Documents in flight at once: enough that one parses while others embed and that many small
# documents fill the model's batches together; each holds its file, its text and a database
# connection until it is done.
DOCUMENTS_IN_FLIGHT = 8


def register(runtime: ServiceRuntime) -> None:
    def service() -> IndexingService:
        indexing: IndexingService = runtime.state["indexing"]
        return indexing

    async def on_document(event: Any, session: AsyncSession) -> None:
        """Index an uploaded document; drop a deleted document's points and file. Other
        documents' events overtake a slow one; a document's own events keep their order (an
        upload, then its delete)."""
        if isinstance(event, DocumentUploaded):
            await service().index(event, session)
        elif isinstance(event, DocumentDeleted) and event.tenant_id is not None:
            await service().forget_document(event.tenant_id, event.data.document_id)

    async def on_tenant(event: Any, session: AsyncSession) -> None:
        """A deleted tenant's points leave the index."""
        if isinstance(event, TenantDeleted):
            await service().forget_tenant(event.data.tenant_id)

    runtime.consumers.subscribe_windowed(
        DOCUMENTS,
        [DocumentUploaded, DocumentDeleted],
        group=DOCUMENTS_GROUP,
        handler=on_document,
        window=DOCUMENTS_IN_FLIGHT,
        ordering_key=lambda event: event.data.document_id,
    )
    runtime.consumers.subscribe(TENANTS, [TenantDeleted], group=TENANTS_GROUP, handler=on_tenant)
