"""Thin consumers: a batch of events → metering, then the quota state of the tenants touched."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import DocumentDeleted, DocumentIndexed, TokensConsumed
from docuchat_common.events.topics import DOCUMENTS, TOKENS
from docuchat_common.service import ServiceRuntime
from docuchat_usage.metering.repository import MeteringRepository
from docuchat_usage.metering.service import MeteringService
from docuchat_usage.quotas.service import QuotaService

TOKENS_GROUP = "usage.tokens"
DOCUMENTS_GROUP = "usage.documents"


def register(runtime: ServiceRuntime) -> None:
    async def on_tokens(events: list[Any], session: AsyncSession) -> None:
        """Meter LLM and embedding tokens; tenants crossing a threshold get quota.changed."""
        touched = await MeteringService(MeteringRepository(session)).record_tokens(events)
        await QuotaService(session, runtime.outbox).evaluate(touched)

    async def on_documents(events: list[Any], session: AsyncSession) -> None:
        """Count indexed documents and their storage; deleted ones stop counting."""
        metering = MeteringRepository(session)
        touched = set()
        for event in events:
            if event.tenant_id is None:
                continue
            if isinstance(event, DocumentIndexed):
                await metering.document_indexed(
                    event.tenant_id, event.data.document_id, event.data.size_bytes
                )
            elif isinstance(event, DocumentDeleted):
                await metering.document_deleted(event.tenant_id, event.data.document_id)
            touched.add(event.tenant_id)
        await QuotaService(session, runtime.outbox).evaluate(touched)

    runtime.consumers.subscribe_batch(
        TOKENS, [TokensConsumed], group=TOKENS_GROUP, handler=on_tokens, max_records=2000
    )
    runtime.consumers.subscribe_batch(
        DOCUMENTS, [DocumentIndexed, DocumentDeleted], group=DOCUMENTS_GROUP, handler=on_documents
    )
