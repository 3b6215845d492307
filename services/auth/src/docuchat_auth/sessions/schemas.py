from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, EmailStr, Field, StringConstraints

# Users paste codes with stray spaces; anything but six digits cannot be right.
EmailCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")]


class LoginIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class RefreshTokenIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class EmailIn(BaseModel):
    email: EmailStr


class EmailCodeVerifyIn(BaseModel):
    email: EmailStr
    code: EmailCode


class PasswordResetIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=1024)
