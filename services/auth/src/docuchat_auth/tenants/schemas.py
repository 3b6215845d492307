from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from docuchat_common.schemas import PatchModel

Role = Literal["owner", "admin", "member"]


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    plan: str
    created_at: datetime


class TenantPatch(PatchModel):
    not_clearable = frozenset({"name"})

    name: str | None = Field(default=None, min_length=1, max_length=200)


class MemberOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    role: Role
    status: Literal["active", "invited"]
    created_at: datetime


class MemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None = None


class InviteIn(BaseModel):
    email: EmailStr
    role: Role = "member"
    name: str | None = Field(default=None, max_length=200)


class RolePatch(PatchModel):
    role: Role
