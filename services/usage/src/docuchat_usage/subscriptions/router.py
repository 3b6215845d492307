from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from docuchat_common.identity import CurrentIdentity, Identity, require
from docuchat_common.service import DbSession, Runtime
from docuchat_usage.quotas.service import QuotaService
from docuchat_usage.subscriptions.dependencies import subscription_service
from docuchat_usage.subscriptions.schemas import PlanChange, SubscriptionOut

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])

Owner = Annotated[Identity, Depends(require(role="owner", scope="admin"))]


@router.get("/plan", response_model=SubscriptionOut)
async def current_plan(
    identity: CurrentIdentity, session: DbSession, runtime: Runtime
) -> SubscriptionOut:
    """The caller's tenant's plan and its limits."""
    return await subscription_service(session, runtime).current(identity.tenant_id)


@router.put("/plan", response_model=SubscriptionOut)
async def change_plan(
    body: PlanChange, identity: Owner, session: DbSession, runtime: Runtime
) -> SubscriptionOut:
    """Move the tenant to another plan (owner only); the new limits apply at once."""
    service = subscription_service(session, runtime)
    await service.change_plan(identity.tenant_id, body.plan)
    await QuotaService(session, runtime.outbox).evaluate({identity.tenant_id}, force=True)
    return await service.current(identity.tenant_id)
