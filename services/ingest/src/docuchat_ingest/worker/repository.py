"""The worker's statements on a document: few and cheap, since every document makes them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_ingest.models import Document, KnowledgeBase


class IndexingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def start_processing(
        self, tenant_id: uuid.UUID, document_id: uuid.UUID
    ) -> tuple[Document, dict[str, Any]] | None:
        """Mark the tenant's document ``processing``: the document and its knowledge base's
        settings, or None if it is gone. One statement (not a read, then a write)."""
        kb_settings = (
            select(KnowledgeBase.settings)
            .where(KnowledgeBase.id == Document.knowledge_base_id)
            .scalar_subquery()
        )
        row = (
            await self.session.execute(
                update(Document)
                .where(Document.id == document_id, Document.tenant_id == tenant_id)
                .values(status="processing", progress=0.0)
                .returning(Document, kb_settings),
                execution_options={"synchronize_session": False},
            )
        ).first()
        if row is None:
            return None
        document, settings = row
        return document, settings or {}

    async def set_state(self, document_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(Document).where(Document.id == document_id).values(**values),
            execution_options={"synchronize_session": False},
        )
