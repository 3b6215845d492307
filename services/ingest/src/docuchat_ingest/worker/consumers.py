"""Thin consumers for the worker role: event → indexing service call."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import DocumentDeleted, DocumentUploaded, TenantDeleted
from docuchat_common.events.consumer import SlowHandler
from docuchat_common.events.topics import DOCUMENTS, TENANTS
from docuchat_common.logging import get_logger
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.settings import IngestSettings
from docuchat_ingest.worker.service import IndexingOutcome, IndexingService

log = get_logger(__name__)

DOCUMENTS_GROUP = "ingest.worker"
TENANTS_GROUP = "ingest.worker.tenants"


def documents_in_flight(wanted: int, pool_capacity: int) -> int:
    """The worker's window of documents: ``wanted``, but at most half the database pool. Each
    document holds a connection for its advisory lock until it is done, and its transactions
    (progress, outcome) need another: a window that took the whole pool would leave them
    waiting for a connection that never comes free."""
    return max(1, min(wanted, pool_capacity // 2))


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

    settings = cast(IngestSettings, runtime.settings)
    window = documents_in_flight(settings.documents_in_flight, runtime.database.capacity)
    if window < settings.documents_in_flight:
        log.warning(
            "fewer documents in flight than configured: the database pool is too small",
            configured=settings.documents_in_flight,
            in_flight=window,
            pool_capacity=runtime.database.capacity,
        )
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
        window=window,
        ordering_key=lambda event: event.data.document_id,
    )
    # A purge: the gateway refuses the deleted tenant's tokens at once.
    runtime.consumers.subscribe(
        TENANTS, [TenantDeleted], group=TENANTS_GROUP, handler=on_tenant, background=True
    )
