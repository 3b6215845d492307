from __future__ import annotations

import uuid

from docuchat_common.errors import NotFound, Unprocessable
from docuchat_common.logging import get_logger
from docuchat_usage.plans.repository import PlanRepository
from docuchat_usage.plans.service import plan_out
from docuchat_usage.subscriptions.repository import SubscriptionRepository
from docuchat_usage.subscriptions.schemas import SubscriptionOut

log = get_logger(__name__)


class SubscriptionService:
    def __init__(
        self, subscriptions: SubscriptionRepository, plans: PlanRepository, default_plan: str
    ) -> None:
        self.subscriptions = subscriptions
        self.plans = plans
        self.default_plan = default_plan

    async def subscribe_new_tenant(self, tenant_id: uuid.UUID, requested_plan: str | None) -> None:
        plan_id = requested_plan or self.default_plan
        if await self.plans.get(plan_id) is None:
            log.warning("unknown plan requested; using the default", plan=plan_id)
            plan_id = self.default_plan
        if await self.subscriptions.create_if_missing(tenant_id, plan_id):
            log.info("tenant subscribed", plan=plan_id)

    async def change_plan(self, tenant_id: uuid.UUID, plan_id: str) -> None:
        if await self.plans.get(plan_id) is None:
            raise Unprocessable(f"no plan named {plan_id!r}", code="unknown_plan")
        # The owner's token proves the tenant exists; its tenant.created may still be on its
        # way (an owner upgrading right after signing up). Subscribed now, the tenant keeps
        # this plan: tenant.created only subscribes a tenant that has none.
        await self.subscriptions.set_plan(tenant_id, plan_id)

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        await self.subscriptions.delete(tenant_id)

    async def current(self, tenant_id: uuid.UUID) -> SubscriptionOut:
        subscription = await self.subscriptions.get(tenant_id)
        if subscription is None:
            raise NotFound("no subscription yet for this tenant", code="subscription_not_found")
        plan = await self.plans.get(subscription.plan_id)
        if plan is None:  # a foreign key makes this impossible; keep mypy and readers honest
            raise NotFound("plan not found")
        return SubscriptionOut(
            tenant_id=subscription.tenant_id,
            plan=plan_out(plan),
            subscribed_at=subscription.subscribed_at,
        )
