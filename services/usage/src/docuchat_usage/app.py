"""Usage: plans, subscriptions, metering and quota state."""

from __future__ import annotations

from pathlib import Path

from docuchat_common.events.catalog import QuotaChanged
from docuchat_common.service import ServiceRuntime
from docuchat_usage.models import metadata
from docuchat_usage.plans.router import router as plans_router
from docuchat_usage.settings import UsageSettings
from docuchat_usage.subscriptions import consumers as subscription_consumers
from docuchat_usage.subscriptions.router import router as subscriptions_router

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: UsageSettings | None = None) -> ServiceRuntime:
    settings = settings or UsageSettings()
    runtime = ServiceRuntime(
        name="usage",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[plans_router, subscriptions_router],
        publishes=[QuotaChanged],
    )
    subscription_consumers.register(runtime)
    return runtime
