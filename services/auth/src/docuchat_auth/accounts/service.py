"""Registration and profile. Services flush; the request commits."""

from __future__ import annotations

import uuid

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts import passwords
from docuchat_auth.accounts.repository import AccountRepository
from docuchat_auth.accounts.schemas import RegisterIn, RegisterOut, TenantOut, UserOut
from docuchat_auth.models import User
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.repository import RefreshTokenRepository
from docuchat_auth.tokens.service import TokenService
from docuchat_common.errors import Conflict, NotFound, Unprocessable
from docuchat_common.events.catalog import (
    TenantCreated,
    TenantCreatedData,
    UserCreated,
    UserCreatedData,
)
from docuchat_common.events.outbox import Outbox

SOURCE = "auth"


def normalise_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Unprocessable(str(exc), code="invalid_email") from exc


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, name=user.name, role=user.role, tenant_id=user.tenant_id
    )


class AccountService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        outbox: Outbox,
        tokens: TokenService,
        settings: AuthSettings,
    ) -> None:
        self.session = session
        self.accounts = AccountRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.outbox = outbox
        self.tokens = tokens
        self.settings = settings

    async def register(self, body: RegisterIn) -> RegisterOut:
        email = normalise_email(body.email)
        passwords.check_policy(
            body.password, min_length=self.settings.password_min_length, email=email
        )
        if await self.accounts.email_taken(email):
            raise Conflict("an account with this email already exists", code="email_taken")
        tenant = await self.accounts.add_tenant(body.tenant_name.strip())
        user = await self.accounts.add_user(
            tenant_id=tenant.id,
            email=email,
            name=body.name,
            password_hash=await passwords.hash_password(body.password),
            role="owner",
        )
        await self.outbox.add(
            self.session,
            TenantCreated(
                tenant_id=tenant.id,
                source=SOURCE,
                data=TenantCreatedData(
                    tenant_id=tenant.id, name=tenant.name, owner_user_id=user.id
                ),
            ),
            UserCreated(
                tenant_id=tenant.id,
                source=SOURCE,
                data=UserCreatedData(user_id=user.id, role=user.role),
            ),
        )
        pair = await self.tokens.issue_pair(user, self.refresh_tokens)
        return RegisterOut(
            **pair.model_dump(),
            user=user_out(user),
            tenant=TenantOut(id=tenant.id, name=tenant.name),
        )

    async def profile(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> UserOut:
        user = await self.accounts.user_in_tenant(user_id, tenant_id)
        if user is None:
            raise NotFound("user not found")
        return user_out(user)
