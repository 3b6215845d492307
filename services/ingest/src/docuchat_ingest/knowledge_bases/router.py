from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.identity import Identity, require
from docuchat_common.pagination import Limit
from docuchat_common.service import DbSession, runtime_of
from docuchat_ingest.knowledge_bases.repository import KnowledgeBaseRepository
from docuchat_ingest.knowledge_bases.schemas import (
    KnowledgeBaseIn,
    KnowledgeBaseList,
    KnowledgeBaseOut,
    KnowledgeBasePatch,
)
from docuchat_ingest.knowledge_bases.service import KnowledgeBaseService

router = APIRouter(prefix="/api/v1/knowledge-bases", tags=["knowledge bases"])

Reader = Annotated[Identity, Depends(require(scope="read"))]
# One knowledge base may also be read with a chat-only key: chat checks, as its caller, that
# a new session's knowledge base exists (its search shows the same name and prompt anyway).
ReaderOrChatter = Annotated[Identity, Depends(require(scope=("read", "chat")))]
Writer = Annotated[Identity, Depends(require(scope="write"))]
# Deleting a knowledge base deletes everyone's documents in it.
Admin = Annotated[Identity, Depends(require(role="admin", scope="write"))]


def kb_service(request: Request, session: AsyncSession) -> KnowledgeBaseService:
    runtime = runtime_of(request)
    return KnowledgeBaseService(
        KnowledgeBaseRepository(session), runtime.state.get("quota"), runtime.outbox
    )


@router.get("", response_model=KnowledgeBaseList)
async def list_knowledge_bases(
    identity: Reader,
    request: Request,
    session: DbSession,
    limit: Limit = 20,
    cursor: str | None = None,
) -> KnowledgeBaseList:
    return await kb_service(request, session).list(identity, limit=limit, cursor=cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KnowledgeBaseOut)
async def create_knowledge_base(
    body: KnowledgeBaseIn, identity: Writer, request: Request, session: DbSession
) -> KnowledgeBaseOut:
    return await kb_service(request, session).create(identity, body)


@router.get("/{kb_id}", response_model=KnowledgeBaseOut)
async def get_knowledge_base(
    kb_id: uuid.UUID, identity: ReaderOrChatter, request: Request, session: DbSession
) -> KnowledgeBaseOut:
    return await kb_service(request, session).get(identity, kb_id)


@router.patch("/{kb_id}", response_model=KnowledgeBaseOut)
async def update_knowledge_base(
    kb_id: uuid.UUID,
    body: KnowledgeBasePatch,
    identity: Writer,
    request: Request,
    session: DbSession,
) -> KnowledgeBaseOut:
    return await kb_service(request, session).update(identity, kb_id, body)


@router.delete("/{kb_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_knowledge_base(
    kb_id: uuid.UUID, identity: Admin, request: Request, session: DbSession
) -> Response:
    await kb_service(request, session).delete(identity, kb_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
