from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.models import ApiKey, Tenant, User


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def email_taken(self, email: str) -> bool:
        return (await self.session.scalar(select(User.id).where(User.email == email))) is not None

    async def add_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=uuid.uuid4(), name=name)
        self.session.add(tenant)
        await self.session.flush()
        return tenant

    async def add_user(
        self, *, tenant_id: uuid.UUID, email: str, name: str | None, password_hash: str, role: str
    ) -> User:
        user = User(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            email=email,
            name=name,
            password_hash=password_hash,
            role=role,
        )
        self.session.add(user)
        await self.session.flush()
        return user

    async def owners(self, tenant_id: uuid.UUID) -> int:
        """How many owners the tenant has, with their rows locked until commit: two owners
        demoting each other at once cannot both see the other as the remaining owner."""
        rows = await self.session.scalars(
            select(User.id)
            .where(User.tenant_id == tenant_id, User.role == "owner")
            .with_for_update()
        )
        return len(rows.all())

    async def delete_user(self, user: User) -> None:
        """The user goes with their sessions (cascade) and the API keys they made: keys die
        with the person who made them, like personal access tokens."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.created_by == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        await self.session.delete(user)
        await self.session.flush()

    async def user_in_tenant(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> User | None:
        return await self.session.scalar(
            select(User).where(User.id == user_id, User.tenant_id == tenant_id)
        )

    async def user_by_email(self, email: str) -> User | None:
        """``email`` normalised, as stored."""
        return await self.session.scalar(select(User).where(User.email == email))

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def tenant_of(self, user: User) -> Tenant:
        tenant = await self.session.get(Tenant, user.tenant_id)
        if tenant is None:  # the foreign key cascades: a user never outlives its tenant
            raise LookupError(f"user {user.id} has no tenant")
        return tenant
