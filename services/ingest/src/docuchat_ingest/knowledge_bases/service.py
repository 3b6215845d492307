"""Knowledge bases: a tenant's document collections. Services flush; the request commits."""

from __future__ import annotations

import uuid

from docuchat_common.errors import Conflict, NotFound, QuotaExceeded
from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentDeletedData,
    KnowledgeBaseDeleted,
    KnowledgeBaseDeletedData,
)
from docuchat_common.events.outbox import Outbox
from docuchat_common.identity import Identity
from docuchat_common.pagination import decode_cursor, encode_cursor
from docuchat_common.quota import QuotaGuard
from docuchat_ingest.knowledge_bases.repository import KnowledgeBaseRepository
from docuchat_ingest.knowledge_bases.schemas import (
    KnowledgeBaseIn,
    KnowledgeBaseList,
    KnowledgeBaseOut,
    KnowledgeBasePatch,
    KnowledgeBaseSettings,
)
from docuchat_ingest.models import KnowledgeBase

DEFAULT_NAME = "My documents"
# A knowledge-base count only drops when one is deleted: there is no reset time to wait for.
KB_QUOTA_RETRY_AFTER = 3600


def kb_out(kb: KnowledgeBase) -> KnowledgeBaseOut:
    return KnowledgeBaseOut(
        id=kb.id,
        name=kb.name,
        description=kb.description,
        system_prompt=kb.system_prompt,
        settings=KnowledgeBaseSettings.model_validate(kb.settings or {}),
        is_default=kb.is_default,
        created_at=kb.created_at,
        updated_at=kb.updated_at,
    )


class KnowledgeBaseService:
    def __init__(
        self,
        knowledge_bases: KnowledgeBaseRepository,
        quota: QuotaGuard | None,
        outbox: Outbox | None = None,
    ) -> None:
        self.knowledge_bases = knowledge_bases
        self.quota = quota
        self.outbox = outbox

    async def _get(self, identity: Identity, kb_id: uuid.UUID) -> KnowledgeBase:
        kb = await self.knowledge_bases.get(identity.tenant_id, kb_id)
        if kb is None:  # another tenant's looks exactly like none
            raise NotFound("knowledge base not found", code="knowledge_base_not_found")
        return kb

    async def _check_name(
        self, identity: Identity, name: str, other_than: uuid.UUID | None = None
    ) -> None:
        if await self.knowledge_bases.name_taken(identity.tenant_id, name, other_than=other_than):
            raise Conflict("a knowledge base with this name exists", code="knowledge_base_exists")

    async def create(self, identity: Identity, body: KnowledgeBaseIn) -> KnowledgeBaseOut:
        state = self.quota.state(identity.tenant_id) if self.quota else None
        allowed = state.knowledge_bases if state else None
        if allowed is not None and await self.knowledge_bases.count(identity.tenant_id) >= allowed:
            raise QuotaExceeded(
                f"the plan allows {allowed} knowledge bases",
                retry_after=KB_QUOTA_RETRY_AFTER,
                extra={"limit": "knowledge_bases"},
            )
        name = body.name.strip()
        await self._check_name(identity, name)
        kb = KnowledgeBase(
            id=uuid.uuid4(),
            tenant_id=identity.tenant_id,
            name=name,
            description=body.description,
            system_prompt=body.system_prompt,
            settings=body.settings.model_dump(),
            is_default=False,
        )
        await self.knowledge_bases.add(kb)
        return kb_out(kb)

    async def get(self, identity: Identity, kb_id: uuid.UUID) -> KnowledgeBaseOut:
        return kb_out(await self._get(identity, kb_id))

    async def list(
        self, identity: Identity, *, limit: int, cursor: str | None
    ) -> KnowledgeBaseList:
        after = decode_cursor(cursor) if cursor else None
        rows = await self.knowledge_bases.page(identity.tenant_id, after=after, limit=limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return KnowledgeBaseList(
            items=[kb_out(kb) for kb in page],
            next_cursor=encode_cursor(last.created_at, last.id) if last else None,
        )

    async def update(
        self, identity: Identity, kb_id: uuid.UUID, patch: KnowledgeBasePatch
    ) -> KnowledgeBaseOut:
        kb = await self._get(identity, kb_id)
        fields = patch.model_fields_set
        if "name" in fields and patch.name is not None:
            name = patch.name.strip()
            await self._check_name(identity, name, other_than=kb.id)
            kb.name = name
        if "description" in fields:
            kb.description = patch.description
        if "system_prompt" in fields:
            kb.system_prompt = patch.system_prompt
        if "settings" in fields and patch.settings is not None:
            kb.settings = patch.settings.model_dump()
        await self.knowledge_bases.session.flush()
        await self.knowledge_bases.session.refresh(kb)
        return kb_out(kb)

    async def delete(self, identity: Identity, kb_id: uuid.UUID) -> None:
        kb = await self._get(identity, kb_id)
        if kb.is_default:
            raise Conflict(
                "the default knowledge base cannot be deleted", code="default_knowledge_base"
            )
        # Its documents go with it (cascade); each one's document.deleted lets the worker drop
        # its points and file, and usage stop counting it. knowledge_base.deleted tells chat.
        documents = await self.knowledge_bases.documents_of(kb.id)
        if self.outbox is not None:
            await self.outbox.add(
                self.knowledge_bases.session,
                # chat deletes the knowledge base's sessions
                KnowledgeBaseDeleted(
                    tenant_id=identity.tenant_id,
                    source="ingest",
                    data=KnowledgeBaseDeletedData(
                        knowledge_base_id=kb.id, name=kb.name, documents=len(documents)
                    ),
                ),
                *(
                    DocumentDeleted(
                        tenant_id=identity.tenant_id,
                        source="ingest",
                        data=DocumentDeletedData(
                            document_id=doc.id,
                            knowledge_base_id=kb.id,
                            size_bytes=doc.size_bytes,
                            was_indexed=doc.status == "indexed",
                        ),
                    )
                    for doc in documents
                ),
            )
        await self.knowledge_bases.delete(kb)

    async def create_default(self, tenant_id: uuid.UUID) -> bool:
        return await self.knowledge_bases.add_default(
            tenant_id, DEFAULT_NAME, KnowledgeBaseSettings().model_dump()
        )

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        await self.knowledge_bases.delete_tenant(tenant_id)
