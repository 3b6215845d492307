from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from docuchat_usage.plans.schemas import PlanOut


class SubscriptionOut(BaseModel):
    tenant_id: uuid.UUID
    plan: PlanOut
    subscribed_at: datetime


class PlanChange(BaseModel):
    plan: str
