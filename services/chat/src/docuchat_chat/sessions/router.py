from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from docuchat_chat.answering.retrieval import RetrievalClient, identity_headers
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.sessions.schemas import (
    MessageList,
    SessionIn,
    SessionList,
    SessionOut,
    SessionPatch,
)
from docuchat_chat.sessions.service import SessionService
from docuchat_common.identity import Identity, require
from docuchat_common.pagination import Limit
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

# Sessions are the caller's own: the chat scope covers reading and changing them.
Chatter = Annotated[Identity, Depends(require(scope="chat"))]


def sessions(request: Request, session: DbSession) -> SessionService:
    retrieval: RetrievalClient = runtime_of(request).state["answering"].retrieval
    headers = identity_headers(request)

    async def knowledge_base_check(knowledge_base_id: uuid.UUID) -> None:
        # As the caller: ingest answers 404 for another tenant's knowledge base.
        await retrieval.knowledge_base(knowledge_base_id, identity_headers=headers)

    return SessionService(SessionRepository(session), knowledge_base_check)


Sessions = Annotated[SessionService, Depends(sessions)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
async def create_session(body: SessionIn, identity: Chatter, service: Sessions) -> SessionOut:
    return await service.create(identity, body)


@router.get("", response_model=SessionList)
async def list_sessions(
    identity: Chatter,
    service: Sessions,
    limit: Limit = 20,
    cursor: str | None = None,
    archived: bool = False,
) -> SessionList:
    """The caller's sessions, newest first; ``archived=true`` lists the archived ones."""
    return await service.list(identity, archived=archived, limit=limit, cursor=cursor)


@router.get("/{session_id}", response_model=SessionOut)
async def get_session(session_id: uuid.UUID, identity: Chatter, service: Sessions) -> SessionOut:
    return await service.get(identity, session_id)


@router.patch("/{session_id}", response_model=SessionOut)
async def update_session(
    session_id: uuid.UUID, body: SessionPatch, identity: Chatter, service: Sessions
) -> SessionOut:
    """Rename (``title``), archive (``archived: true``) or restore (``archived: false``)."""
    return await service.update(identity, session_id, body)


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: uuid.UUID, identity: Chatter, service: Sessions) -> Response:
    await service.delete(identity, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{session_id}/messages", response_model=MessageList)
async def list_messages(
    session_id: uuid.UUID,
    identity: Chatter,
    service: Sessions,
    limit: Limit = 20,
    cursor: str | None = None,
) -> MessageList:
    """Oldest first."""
    return await service.messages(identity, session_id, limit=limit, cursor=cursor)
