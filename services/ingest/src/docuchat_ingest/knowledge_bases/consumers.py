"""Thin consumers: event → service call."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import TenantCreated, TenantDeleted
from docuchat_common.events.topics import TENANTS
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.knowledge_bases.repository import KnowledgeBaseRepository
from docuchat_ingest.knowledge_bases.service import KnowledgeBaseService

GROUP = "ingest.tenants"


def register(runtime: ServiceRuntime) -> None:
    async def on_tenant_event(event: Any, session: AsyncSession) -> None:
        """A new tenant gets its default knowledge base; a deleted one loses everything."""
        service = KnowledgeBaseService(KnowledgeBaseRepository(session), None)
        if isinstance(event, TenantCreated):
            await service.create_default(event.data.tenant_id)
        elif isinstance(event, TenantDeleted):
            await service.forget_tenant(event.data.tenant_id)

    runtime.consumers.subscribe(
        TENANTS, [TenantCreated, TenantDeleted], group=GROUP, handler=on_tenant_event
    )
