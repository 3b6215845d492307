from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PlanLimits(BaseModel):
    """Limits of a plan; null means unlimited."""

    model_config = ConfigDict(from_attributes=True)

    daily_tokens: int | None
    monthly_tokens: int | None
    documents: int | None
    storage_bytes: int | None
    knowledge_bases: int | None
    max_file_bytes: int | None
    requests_per_minute: int | None
    allowed_models: list[str]


class PlanOut(BaseModel):
    id: str
    name: str
    description: str
    limits: PlanLimits


class PlanList(BaseModel):
    items: list[PlanOut]
    next_cursor: str | None = None
