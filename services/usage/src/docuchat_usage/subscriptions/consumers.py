"""Thin consumers: event → service call."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import TenantCreated, TenantDeleted
from docuchat_common.events.topics import TENANTS
from docuchat_common.service import ServiceRuntime
from docuchat_usage.metering.repository import MeteringRepository
from docuchat_usage.quotas.repository import QuotaRepository
from docuchat_usage.quotas.service import QuotaService
from docuchat_usage.subscriptions.dependencies import subscription_service

GROUP = "usage.tenants"


def register(runtime: ServiceRuntime) -> None:
    async def on_tenant_event(event: Any, session: AsyncSession) -> None:
        """Subscribe a new tenant to its plan; forget a deleted one."""
        service = subscription_service(session, runtime)
        if isinstance(event, TenantCreated):
            await service.subscribe_new_tenant(event.data.tenant_id, event.data.plan)
            # Chat and ingest learn the plan's limits from the first quota.changed.
            await QuotaService(session, runtime.outbox).evaluate({event.data.tenant_id}, force=True)
        elif isinstance(event, TenantDeleted):
            await service.forget_tenant(event.data.tenant_id)
            await MeteringRepository(session).forget_tenant(event.data.tenant_id)
            await QuotaRepository(session).forget(event.data.tenant_id)

    runtime.consumers.subscribe(
        TENANTS, [TenantCreated, TenantDeleted], group=GROUP, handler=on_tenant_event
    )
