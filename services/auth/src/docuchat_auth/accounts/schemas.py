from __future__ import annotations

import uuid

from pydantic import BaseModel, EmailStr, Field

from docuchat_auth.tenants.schemas import TenantOut
from docuchat_common.schemas import PatchModel


class RegisterIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    tenant_name: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    role: str
    tenant_id: uuid.UUID


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class SignedInOut(TokenPair):
    """What every sign-in answers (register, login, refresh, emailed code): the pair and who
    it is for, so a client needs no second request to show the user and the tenant."""

    user: UserOut
    tenant: TenantOut


class ProfilePatch(PatchModel):
    name: str | None = Field(default=None, max_length=200)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)
