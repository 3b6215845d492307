"""Usage: plans, subscriptions, metering and quota state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from docuchat_common.events.catalog import QuotaChanged
from docuchat_common.events.housekeeping import metered_claims
from docuchat_common.logging import get_logger
from docuchat_common.service import ServiceRuntime
from docuchat_common.tasks import stop_task
from docuchat_usage.metering import consumers as metering_consumers
from docuchat_usage.models import metadata
from docuchat_usage.plans.router import router as plans_router
from docuchat_usage.quotas.service import QuotaService
from docuchat_usage.reports.router import router as reports_router
from docuchat_usage.settings import UsageSettings
from docuchat_usage.subscriptions import consumers as subscription_consumers
from docuchat_usage.subscriptions.router import router as subscriptions_router

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


def build_runtime(settings: UsageSettings | None = None) -> ServiceRuntime:
    settings = settings or UsageSettings()
    runtime = ServiceRuntime(
        name="usage",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[plans_router, subscriptions_router, reports_router],
        publishes=[QuotaChanged],
    )
    subscription_consumers.register(runtime)
    metering_consumers.register(runtime)
    # Token events are claimed apart from processed_events (see models.metered_events).
    runtime.janitor.purges.append(metered_claims(timedelta(hours=settings.claim_retention_hours)))
    runtime.on_start(_start_period_resets(settings.quota_reset_interval_seconds))
    return runtime


def _start_period_resets(interval: float) -> Callable[[ServiceRuntime], Awaitable[None]]:
    """At midnight and month start (UTC) spent daily/monthly quotas lift: a periodic pass
    publishes the new state of tenants whose period ended, without waiting for an event."""

    async def start(runtime: ServiceRuntime) -> None:
        async def loop() -> None:
            while True:
                try:
                    async with runtime.database.transaction() as session:
                        await QuotaService(session, runtime.outbox).reset_due()
                except Exception:
                    log.warning("period reset pass failed", exc_info=True)
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name="usage-period-resets")

        async def stop(_: ServiceRuntime) -> None:
            await stop_task(task)

        runtime.on_stop(stop)

    return start
