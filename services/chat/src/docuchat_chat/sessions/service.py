"""Sessions: a user's conversations, and their messages. Services flush; the request commits."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from docuchat_chat.models import ChatSession, Message
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.sessions.schemas import (
    CitationOut,
    MessageList,
    MessageOut,
    SessionIn,
    SessionList,
    SessionOut,
    SessionPatch,
    UsageOut,
)
from docuchat_common.errors import NotFound, Unprocessable
from docuchat_common.identity import Identity
from docuchat_common.pagination import decode_cursor, encode_cursor

TITLE_WORDS = 8
TITLE_CHARS = 80


def title_from(question: str) -> str:
    """A session's title from its first question: its first words, trimmed."""
    words = question.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        title = title[:TITLE_CHARS].rsplit(" ", 1)[0] or title[:TITLE_CHARS]
    title = re.sub(r"[\s,;:.!?-]+$", "", title)
    return (title + ("…" if len(words) > TITLE_WORDS else "")) or "New chat"


def session_out(chat: ChatSession) -> SessionOut:
    return SessionOut(
        id=chat.id,
        knowledge_base_id=chat.knowledge_base_id,
        title=chat.title,
        archived=chat.archived_at is not None,
        archived_at=chat.archived_at,
        created_at=chat.created_at,
        updated_at=chat.updated_at,
        last_message_at=chat.last_message_at,
    )


def message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=message.id,
        session_id=message.session_id,
        role=message.role,
        content=message.content,
        grounded=message.grounded,
        citations=[CitationOut.model_validate(c) for c in message.citations or []],
        usage=UsageOut.model_validate(message.usage) if message.usage is not None else None,
        model=message.model,
        complete=message.complete,
        status=message.status,
        created_at=message.created_at,
    )


def encode_seq_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([seq]).encode()).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    try:
        (seq,) = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(seq)
    except (ValueError, TypeError) as exc:
        raise Unprocessable("cursor is not one this API returned", code="invalid_cursor") from exc


# Raises NotFound when the caller cannot see the knowledge base (ingest owns them).
KnowledgeBaseCheck = Callable[[uuid.UUID], Awaitable[object]]


class SessionService:
    def __init__(
        self, sessions: SessionRepository, knowledge_base_check: KnowledgeBaseCheck | None = None
    ) -> None:
        self.sessions = sessions
        self.knowledge_base_check = knowledge_base_check

    async def owned(self, identity: Identity, session_id: uuid.UUID) -> ChatSession:
        chat = await self.sessions.get(identity.tenant_id, identity.user_id, session_id)
        if chat is None:  # another tenant's or another user's looks exactly like none
            raise NotFound("session not found", code="session_not_found")
        return chat

    async def create(self, identity: Identity, body: SessionIn) -> SessionOut:
        """A session on a knowledge base the caller can see: a missing one, or another
        tenant's, is a 404 now rather than at the first question."""
        if self.knowledge_base_check is not None:
            await self.knowledge_base_check(body.knowledge_base_id)
        title = body.title.strip() if body.title else None
        chat = ChatSession(
            id=uuid.uuid4(),
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            knowledge_base_id=body.knowledge_base_id,
            title=title or None,
        )
        await self.sessions.add(chat)
        return session_out(chat)

    async def get(self, identity: Identity, session_id: uuid.UUID) -> SessionOut:
        return session_out(await self.owned(identity, session_id))

    async def list(
        self, identity: Identity, *, archived: bool, limit: int, cursor: str | None
    ) -> SessionList:
        before = decode_cursor(cursor) if cursor else None
        rows = await self.sessions.page(
            identity.tenant_id, identity.user_id, archived=archived, before=before, limit=limit + 1
        )
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return SessionList(
            items=[session_out(chat) for chat in page],
            next_cursor=encode_cursor(last.created_at, last.id) if last else None,
        )

    async def update(
        self, identity: Identity, session_id: uuid.UUID, patch: SessionPatch
    ) -> SessionOut:
        chat = await self.owned(identity, session_id)
        fields = patch.model_fields_set
        if "title" in fields and patch.title is not None:
            chat.title = patch.title.strip() or chat.title
        if "archived" in fields and patch.archived is not None:
            if patch.archived and chat.archived_at is None:
                chat.archived_at = datetime.now(UTC)
            elif not patch.archived:
                chat.archived_at = None
        await self.sessions.refresh(chat)
        return session_out(chat)

    async def delete(self, identity: Identity, session_id: uuid.UUID) -> None:
        await self.sessions.delete(await self.owned(identity, session_id))

    async def messages(
        self, identity: Identity, session_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> MessageList:
        chat = await self.owned(identity, session_id)
        after = decode_seq_cursor(cursor) if cursor else None
        rows = await self.sessions.messages(chat, after_seq=after, limit=limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return MessageList(
            items=[message_out(m) for m in page],
            next_cursor=encode_seq_cursor(last.seq) if last else None,
        )

    async def forget_user(self, user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> None:
        await self.sessions.delete_user(user_id, tenant_id)

    async def forget_knowledge_base(self, kb_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        await self.sessions.delete_knowledge_base(kb_id, tenant_id)

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        await self.sessions.delete_tenant(tenant_id)
