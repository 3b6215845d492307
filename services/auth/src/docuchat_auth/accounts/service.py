"""Registration and profile. Services flush; the request commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts import passwords
from docuchat_auth.accounts.repository import AccountRepository
from docuchat_auth.accounts.schemas import (
    PasswordChange,
    ProfilePatch,
    RegisterIn,
    SignedInOut,
    TokenPair,
    UserOut,
)
from docuchat_auth.models import Tenant, User
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tenants.schemas import TenantOut
from docuchat_auth.tokens.repository import RefreshTokenRepository
from docuchat_auth.tokens.service import TokenService
from docuchat_common.errors import Conflict, Forbidden, NotFound, Unprocessable
from docuchat_common.events.catalog import (
    TenantCreated,
    TenantCreatedData,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
)
from docuchat_common.events.outbox import Outbox
from docuchat_common.identity import Identity

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


def signed_in_out(pair: TokenPair, user: User, tenant: Tenant) -> SignedInOut:
    return SignedInOut(
        **pair.model_dump(), user=user_out(user), tenant=TenantOut.model_validate(tenant)
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

    async def register(self, body: RegisterIn) -> SignedInOut:
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
        return signed_in_out(pair, user, tenant)

    async def _user(self, identity: Identity) -> User:
        user = await self.accounts.user_in_tenant(identity.user_id, identity.tenant_id)
        if user is None:  # deleted since the token was issued
            raise NotFound("user not found", code="user_not_found")
        return user

    async def profile(self, identity: Identity) -> UserOut:
        return user_out(await self._user(identity))

    async def update_profile(self, identity: Identity, patch: ProfilePatch) -> UserOut:
        user = await self._user(identity)
        if patch.name is not None:
            user.name = patch.name.strip() or None
        return user_out(user)

    async def change_password(self, identity: Identity, body: PasswordChange) -> None:
        """New password; every other session of the user ends (the caller's own stays)."""
        user = await self._user(identity)
        if user.password_hash is None or not await passwords.verify_password(
            user.password_hash, body.current_password
        ):
            raise Forbidden("the current password is wrong", code="wrong_password")
        passwords.check_policy(
            body.new_password, min_length=self.settings.password_min_length, email=user.email
        )
        user.password_hash = await passwords.hash_password(body.new_password)
        user.password_changed_at = datetime.now(UTC)
        keep = uuid.UUID(identity.session_id) if identity.session_id else None
        await self.refresh_tokens.revoke_user(user.id, except_family=keep)

    async def delete_account(self, identity: Identity) -> None:
        """The user and everything auth holds for them go; user.deleted tells the others."""
        user = await self._user(identity)
        if user.role == "owner" and await self.accounts.owners(user.tenant_id) == 1:
            raise Conflict(
                "the last owner cannot leave: transfer ownership or delete the tenant",
                code="last_owner",
            )
        await self.accounts.delete_user(user)
        await self.outbox.add(
            self.session,
            UserDeleted(
                tenant_id=user.tenant_id, source=SOURCE, data=UserDeletedData(user_id=user.id)
            ),
        )
