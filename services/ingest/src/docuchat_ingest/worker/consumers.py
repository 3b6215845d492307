"""Thin consumers for the worker role: event → indexing service call."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import DocumentDeleted, DocumentUploaded, TenantDeleted
from docuchat_common.events.consumer import SlowHandler
from docuchat_common.events.topics import DOCUMENTS, TENANTS
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.worker.service import IndexingOutcome, IndexingService

DOCUMENTS_GROUP = "ingest.worker"
TENANTS_GROUP = "ingest.worker.tenants"
# Documents in flight at once: enough that one parses while others embed and that many small
# documents fill the model's batches together; each holds its file, its text and a pooled
# connection (its advisory lock, outside any transaction) until it is done.
DOCUMENTS_IN_FLIGHT = 8


def register(runtime: ServiceRuntime) -> None:
    def service() -> IndexingService:
        indexing: IndexingService = runtime.state["indexing"]
        return indexing

    async def index_or_forget(event: Any) -> IndexingOutcome | None:
        if isinstance(event, DocumentUploaded):
            return await service().index(event)
        if isinstance(event, DocumentDeleted) and event.tenant_id is not None:
            await service().forget_document(event.tenant_id, event.data.document_id)
        return None

    async def record(event: Any, outcome: IndexingOutcome | None, session: AsyncSession) -> None:
        if outcome is not None:
            await service().record(session, outcome)

    async def on_tenant(event: Any, session: AsyncSession) -> None:
        """A deleted tenant's points leave the index."""
        if isinstance(event, TenantDeleted):
            await service().forget_tenant(event.data.tenant_id)

    runtime.consumers.subscribe_windowed(
        DOCUMENTS,
        [DocumentUploaded, DocumentDeleted],
        group=DOCUMENTS_GROUP,
        # Indexing takes seconds to minutes: outside any transaction, its outcome recorded
        # with the event's claim.
        handler=SlowHandler(
            work=index_or_forget,
            record=record,
            description=(
                "Index an uploaded document; drop a deleted document's points and file. Other"
                " documents' events overtake a slow one; a document's own events keep their"
                " order (an upload, then its delete)."
            ),
        ),
        window=DOCUMENTS_IN_FLIGHT,
        ordering_key=lambda event: event.data.document_id,
    )
    runtime.consumers.subscribe(TENANTS, [TenantDeleted], group=TENANTS_GROUP, handler=on_tenant)
