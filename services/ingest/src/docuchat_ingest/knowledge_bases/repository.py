from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_ingest.models import Document, KnowledgeBase


class KnowledgeBaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> KnowledgeBase | None:
        return await self.session.scalar(
            select(KnowledgeBase).where(
                KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.id == kb_id
            )
        )

    async def name_taken(
        self, tenant_id: uuid.UUID, name: str, *, other_than: uuid.UUID | None = None
    ) -> bool:
        stmt = select(KnowledgeBase.id).where(
            KnowledgeBase.tenant_id == tenant_id, func.lower(KnowledgeBase.name) == name.lower()
        )
        if other_than is not None:
            stmt = stmt.where(KnowledgeBase.id != other_than)
        return (await self.session.scalar(stmt)) is not None

    async def count(self, tenant_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(KnowledgeBase)
                .where(KnowledgeBase.tenant_id == tenant_id)
            )
            or 0
        )

    async def add(self, kb: KnowledgeBase) -> None:
        self.session.add(kb)
        await self.session.flush()

    async def add_default(
        self, tenant_id: uuid.UUID, name: str, settings: dict[str, object]
    ) -> bool:
        """The tenant's first knowledge base, once: a redelivered tenant.created adds nothing."""
        exists = await self.session.scalar(
            select(KnowledgeBase.id).where(
                KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.is_default
            )
        )
        if exists is not None:
            return False
        result = await self.session.execute(
            insert(KnowledgeBase)
            .values(
                id=uuid.uuid4(), tenant_id=tenant_id, name=name, settings=settings, is_default=True
            )
            .on_conflict_do_nothing()
            .returning(KnowledgeBase.id)
        )
        return result.first() is not None

    async def page(
        self, tenant_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[KnowledgeBase]:
        stmt = select(KnowledgeBase).where(KnowledgeBase.tenant_id == tenant_id)
        if after is not None:
            stmt = stmt.where((KnowledgeBase.created_at, KnowledgeBase.id) > after)  # type: ignore[operator]
        stmt = stmt.order_by(KnowledgeBase.created_at, KnowledgeBase.id).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def documents_of(self, kb_id: uuid.UUID) -> list[Document]:
        return list(
            (
                await self.session.scalars(
                    select(Document).where(Document.knowledge_base_id == kb_id)
                )
            ).all()
        )

    async def delete(self, kb: KnowledgeBase) -> None:
        await self.session.delete(kb)
        await self.session.flush()

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(KnowledgeBase).where(KnowledgeBase.tenant_id == tenant_id)
        )
