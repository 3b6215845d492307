from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.models import OneTimeSecret


class OneTimeSecretRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def replace(
        self,
        *,
        purpose: str,
        subject: str,
        user_id: uuid.UUID,
        secret_hash: str,
        expires_at: datetime,
    ) -> None:
        """Store a new secret; every earlier one of this purpose for the subject is dropped, so
        only the newest is valid and the table holds at most one row per subject and purpose."""
        await self.session.execute(
            delete(OneTimeSecret).where(
                OneTimeSecret.purpose == purpose, OneTimeSecret.subject == subject
            )
        )
        self.session.add(
            OneTimeSecret(
                id=uuid.uuid4(),
                purpose=purpose,
                subject=subject,
                user_id=user_id,
                secret_hash=secret_hash,
                attempts=0,
                expires_at=expires_at,
            )
        )
        await self.session.flush()

    async def claim_attempt(
        self, *, purpose: str, subject: str, max_attempts: int
    ) -> OneTimeSecret | None:
        """Count one attempt against the subject's newest live secret and return it, or None
        when there is none or its attempts are spent. One atomic UPDATE, so concurrent guesses
        cannot exceed ``max_attempts`` between a read and a write."""
        newest = (
            select(OneTimeSecret.id)
            .where(
                OneTimeSecret.purpose == purpose,
                OneTimeSecret.subject == subject,
                OneTimeSecret.used_at.is_(None),
                OneTimeSecret.expires_at > datetime.now(UTC),
            )
            .order_by(OneTimeSecret.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        return await self.session.scalar(
            update(OneTimeSecret)
            .where(OneTimeSecret.id == newest, OneTimeSecret.attempts < max_attempts)
            .values(attempts=OneTimeSecret.attempts + 1)
            .returning(OneTimeSecret)
        )

    async def live_by_hash_for_update(
        self, *, purposes: Collection[str], secret_hash: str
    ) -> OneTimeSecret | None:
        """The unused, unexpired secret with this hash, locked: two concurrent uses of one
        token cannot both succeed."""
        return await self.session.scalar(
            select(OneTimeSecret)
            .where(
                OneTimeSecret.purpose.in_(purposes),
                OneTimeSecret.secret_hash == secret_hash,
                OneTimeSecret.used_at.is_(None),
                OneTimeSecret.expires_at > datetime.now(UTC),
            )
            .with_for_update()
        )

    async def consume(self, secret_id: uuid.UUID) -> bool:
        """Mark the secret used; False when another request used it first."""
        used = await self.session.scalar(
            update(OneTimeSecret)
            .where(OneTimeSecret.id == secret_id, OneTimeSecret.used_at.is_(None))
            .values(used_at=datetime.now(UTC))
            .returning(OneTimeSecret.id)
        )
        return used is not None
