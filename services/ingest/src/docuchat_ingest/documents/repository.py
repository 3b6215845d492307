from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_ingest.models import Document, KnowledgeBase


class DocumentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def knowledge_base(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> KnowledgeBase | None:
        return await self.session.scalar(
            select(KnowledgeBase).where(
                KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.id == kb_id
            )
        )

    async def get(
        self, tenant_id: uuid.UUID, doc_id: uuid.UUID, *, for_update: bool = False
    ) -> Document | None:
        stmt = select(Document).where(Document.tenant_id == tenant_id, Document.id == doc_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def by_hash(self, kb_id: uuid.UUID, content_hash: str) -> Document | None:
        return await self.session.scalar(
            select(Document).where(
                Document.knowledge_base_id == kb_id, Document.content_hash == content_hash
            )
        )

    async def page(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        *,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        status: str | None = None,
    ) -> list[Document]:
        stmt = select(Document).where(
            Document.tenant_id == tenant_id, Document.knowledge_base_id == kb_id
        )
        if status is not None:
            stmt = stmt.where(Document.status == status)
        if after is not None:
            stmt = stmt.where((Document.created_at, Document.id) > after)  # type: ignore[operator]
        stmt = stmt.order_by(Document.created_at, Document.id).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def add(self, document: Document) -> None:
        self.session.add(document)
        await self.session.flush()
        await self.session.refresh(document)  # server-side created_at / updated_at

    async def delete(self, document: Document) -> None:
        await self.session.delete(document)
        await self.session.flush()
