"""The tenant and its members. Services flush; the request commits."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts.repository import AccountRepository
from docuchat_auth.accounts.service import normalise_email
from docuchat_auth.mail import Mail, MailSender
from docuchat_auth.models import OneTimeSecret, Tenant, User
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tenants.repository import TenantRepository
from docuchat_auth.tenants.schemas import (
    InviteIn,
    MemberList,
    MemberOut,
    Role,
    TenantOut,
    TenantPatch,
)
from docuchat_common.errors import Conflict, Forbidden, NotFound
from docuchat_common.events.catalog import (
    TenantDeleted,
    TenantDeletedData,
    UserCreated,
    UserCreatedData,
    UserDeleted,
    UserDeletedData,
)
from docuchat_common.events.outbox import Outbox
from docuchat_common.identity import Identity
from docuchat_common.pagination import decode_cursor, encode_cursor

SOURCE = "auth"


def tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut.model_validate(tenant)


def member_out(user: User) -> MemberOut:
    return MemberOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        status="active" if user.password_hash else "invited",
        created_at=user.created_at,
    )


class TenantService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        outbox: Outbox,
        mail: MailSender,
        settings: AuthSettings,
    ) -> None:
        self.session = session
        self.tenants = TenantRepository(session)
        self.accounts = AccountRepository(session)
        self.outbox = outbox
        self.mail = mail
        self.settings = settings

    async def _tenant(self, identity: Identity) -> Tenant:
        tenant = await self.tenants.get(identity.tenant_id)
        if tenant is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return tenant

    async def get(self, identity: Identity) -> TenantOut:
        return tenant_out(await self._tenant(identity))

    async def update(self, identity: Identity, patch: TenantPatch) -> TenantOut:
        tenant = await self._tenant(identity)
        if patch.name is not None:
            tenant.name = patch.name.strip()
        return tenant_out(tenant)

    async def delete(self, identity: Identity) -> None:
        """Everything auth holds for the tenant goes now; tenant.deleted makes every other
        service purge theirs."""
        tenant = await self._tenant(identity)
        await self.outbox.add(
            self.session,
            TenantDeleted(
                tenant_id=tenant.id, source=SOURCE, data=TenantDeletedData(tenant_id=tenant.id)
            ),
        )
        await self.tenants.delete(tenant)

    async def set_plan(self, tenant_id: uuid.UUID, plan: str) -> None:
        await self.tenants.set_plan(tenant_id, plan)

    # --- members ---------------------------------------------------------------------------

    async def members(self, identity: Identity, *, limit: int, cursor: str | None) -> MemberList:
        after = decode_cursor(cursor) if cursor else None
        users = await self.tenants.members_page(identity.tenant_id, after=after, limit=limit + 1)
        more = len(users) > limit
        users = users[:limit]
        return MemberList(
            items=[member_out(u) for u in users],
            next_cursor=encode_cursor(users[-1].created_at, users[-1].id)
            if more and users
            else None,
        )

    async def _member(self, identity: Identity, user_id: uuid.UUID) -> User:
        user = await self.tenants.member(identity.tenant_id, user_id)
        if user is None:  # another tenant's user looks exactly like no user
            raise NotFound("member not found", code="member_not_found")
        return user

    @staticmethod
    def _may_assign(identity: Identity, role: Role) -> None:
        if role == "owner" and identity.role != "owner":
            raise Forbidden(
                "only an owner can grant or take the owner role", code="insufficient_role"
            )

    async def invite(self, identity: Identity, body: InviteIn) -> MemberOut:
        self._may_assign(identity, body.role)
        email = normalise_email(body.email)
        if await self.accounts.email_taken(email):
            raise Conflict("an account with this email already exists", code="email_taken")
        user = User(
            id=uuid.uuid4(),
            tenant_id=identity.tenant_id,
            email=email,
            name=body.name,
            password_hash=None,  # set when the invitation is accepted
            role=body.role,
            created_at=datetime.now(UTC),
        )
        await self.tenants.add_member(user)
        token = secrets.token_urlsafe(32)
        await self.tenants.add_secret(
            OneTimeSecret(
                id=uuid.uuid4(),
                purpose="invite",
                subject=email,
                user_id=user.id,
                secret_hash=hashlib.sha256(token.encode()).hexdigest(),
                expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.invite_ttl_seconds),
            )
        )
        await self.outbox.add(
            self.session,
            UserCreated(
                tenant_id=identity.tenant_id,
                source=SOURCE,
                data=UserCreatedData(user_id=user.id, role=user.role),
            ),
        )
        tenant = await self._tenant(identity)
        await self.mail.send(
            Mail(
                to=email,
                subject=f"You are invited to {tenant.name} on DocuChat",
                text=(
                    f"You have been invited to join {tenant.name} on DocuChat.\n\n"
                    "Choose your password: "
                    f"{self.settings.public_url}/accept-invite?token={token}\n"
                    f"(or POST /api/v1/auth/password/reset with this token: {token})\n"
                ),
                kind="invite",
            )
        )
        return member_out(user)

    async def change_role(self, identity: Identity, user_id: uuid.UUID, role: Role) -> MemberOut:
        user = await self._member(identity, user_id)
        self._may_assign(identity, role)
        if user.role == "owner":
            self._may_assign(identity, "owner")  # an admin cannot demote an owner
            if role != "owner" and await self.accounts.owners(identity.tenant_id) == 1:
                raise Conflict("the last owner cannot be demoted", code="last_owner")
        user.role = role
        return member_out(user)

    async def remove(self, identity: Identity, user_id: uuid.UUID) -> None:
        """Remove a member (or leave, when it is the caller): user.deleted lets the other
        services purge the user's data."""
        user = await self._member(identity, user_id)
        leaving = user.id == identity.user_id
        if not leaving and not identity.at_least("admin"):
            raise Forbidden("members cannot remove other members", code="insufficient_role")
        if user.role == "owner":
            if not leaving:
                self._may_assign(identity, "owner")
            if await self.accounts.owners(identity.tenant_id) == 1:
                raise Conflict("the last owner cannot leave", code="last_owner")
        await self.accounts.delete_user(user)
        await self.outbox.add(
            self.session,
            UserDeleted(
                tenant_id=identity.tenant_id, source=SOURCE, data=UserDeletedData(user_id=user.id)
            ),
        )
