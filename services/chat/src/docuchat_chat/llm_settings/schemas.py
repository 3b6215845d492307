from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, HttpUrl

from docuchat_common.schemas import PatchModel


class LLMSettingsOut(BaseModel):
    base_url: str | None
    model: str | None
    # Masked ("sk-...abcd"); the key itself is never returned.
    api_key: str | None
    updated_at: datetime | None


class LLMSettingsPatch(PatchModel):
    """Fields present are changed; ``null`` clears one (back to the service's default)."""

    api_key: str | None = Field(default=None, min_length=1, max_length=500, repr=False)
    base_url: HttpUrl | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
