from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

Scope = Literal["read", "write", "chat", "admin"]
# What an access token carries: a key created without scopes can do what its creator's app
# usually does, but not manage keys.
DEFAULT_SCOPES: list[Scope] = ["read", "write", "chat"]


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)
    # RFC 3339 with an offset: a naive time would be ambiguous.
    expires_at: AwareDatetime | None = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("name must not be blank")
        return name

    @field_validator("expires_at")
    @classmethod
    def _expires_in_the_future(cls, expires_at: datetime | None) -> datetime | None:
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise ValueError("expires_at must be in the future")
        return expires_at


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


class ApiKeyCreated(BaseModel):
    """The only answer that carries the secret ``key``: it is not stored and never shown again."""

    id: uuid.UUID
    name: str
    key: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None = None
