from __future__ import annotations

from fastapi import APIRouter

from docuchat_common.identity import CurrentIdentity
from docuchat_common.service import DbSession, Runtime
from docuchat_usage.subscriptions.dependencies import subscription_service
from docuchat_usage.subscriptions.schemas import SubscriptionOut

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])


@router.get("/plan", response_model=SubscriptionOut)
async def current_plan(
    identity: CurrentIdentity, session: DbSession, runtime: Runtime
) -> SubscriptionOut:
    """The caller's tenant's plan and its limits."""
    return await subscription_service(session, runtime).current(identity.tenant_id)
