"""Thin consumers: event → service call."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.tenants.repository import TenantRepository
from docuchat_common.events.catalog import QuotaChanged
from docuchat_common.events.topics import QUOTA
from docuchat_common.service import ServiceRuntime

GROUP = "auth.quota"


def register(runtime: ServiceRuntime) -> None:
    async def on_quota_changed(event: Any, session: AsyncSession) -> None:
        """Keep the tenant's plan (shown by GET /tenant) in step with usage."""
        if isinstance(event, QuotaChanged) and event.tenant_id is not None:
            await TenantRepository(session).set_plan(event.tenant_id, event.data.plan)

    runtime.consumers.subscribe(QUOTA, [QuotaChanged], group=GROUP, handler=on_quota_changed)
