from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.service import ServiceRuntime
from docuchat_usage.plans.repository import PlanRepository
from docuchat_usage.settings import UsageSettings
from docuchat_usage.subscriptions.repository import SubscriptionRepository
from docuchat_usage.subscriptions.service import SubscriptionService


def subscription_service(session: AsyncSession, runtime: ServiceRuntime) -> SubscriptionService:
    settings = runtime.settings
    default_plan = settings.default_plan if isinstance(settings, UsageSettings) else "free"
    return SubscriptionService(
        SubscriptionRepository(session), PlanRepository(session), default_plan
    )
