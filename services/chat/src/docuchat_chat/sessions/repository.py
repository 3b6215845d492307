from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_chat.models import ChatSession, Feedback, LLMSettings, Message


class SessionRepository:
    """Sessions and their messages. Every query names the tenant, and sessions their owner."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, chat: ChatSession) -> None:
        self.session.add(chat)
        await self.session.flush()
        await self.session.refresh(chat)

    async def get(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> ChatSession | None:
        return await self.session.scalar(
            select(ChatSession).where(
                ChatSession.tenant_id == tenant_id,
                ChatSession.user_id == user_id,
                ChatSession.id == session_id,
            )
        )

    async def page(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        archived: bool,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[ChatSession]:
        """Newest first."""
        stmt = select(ChatSession).where(
            ChatSession.tenant_id == tenant_id,
            ChatSession.user_id == user_id,
            ChatSession.archived_at.is_not(None) if archived else ChatSession.archived_at.is_(None),
        )
        if before is not None:
            stmt = stmt.where((ChatSession.created_at, ChatSession.id) < before)  # type: ignore[operator]
        stmt = stmt.order_by(ChatSession.created_at.desc(), ChatSession.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def refresh(self, chat: ChatSession) -> None:
        await self.session.flush()
        await self.session.refresh(chat)

    async def delete(self, chat: ChatSession) -> None:
        await self.session.delete(chat)
        await self.session.flush()

    async def exists(self, tenant_id: uuid.UUID, chat_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(ChatSession.id).where(
                ChatSession.tenant_id == tenant_id, ChatSession.id == chat_id
            )
        )
        return found is not None

    async def set_title(self, tenant_id: uuid.UUID, chat_id: uuid.UUID, title: str) -> None:
        """Only while it has none: a title the user gave (or renamed to) stays."""
        await self.session.execute(
            update(ChatSession)
            .where(
                ChatSession.tenant_id == tenant_id,
                ChatSession.id == chat_id,
                ChatSession.title.is_(None),
            )
            .values(title=title)
        )

    async def touch(self, tenant_id: uuid.UUID, chat_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(ChatSession)
            .where(ChatSession.tenant_id == tenant_id, ChatSession.id == chat_id)
            .values(last_message_at=at)
        )

    # --- messages -----------------------------------------------------------------------------

    async def add_message(self, message: Message) -> Message:
        """Inserted as given (``created_at`` set by the caller: no read-back)."""
        self.session.add(message)
        await self.session.flush()
        return message

    async def set_message_status(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, status: str
    ) -> None:
        await self.session.execute(
            update(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id)
            .values(status=status)
        )

    async def messages(
        self, chat: ChatSession, *, after_seq: int | None, limit: int
    ) -> list[Message]:
        """Oldest first."""
        stmt = select(Message).where(
            Message.tenant_id == chat.tenant_id, Message.session_id == chat.id
        )
        if after_seq is not None:
            stmt = stmt.where(Message.seq > after_seq)
        stmt = stmt.order_by(Message.seq).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def all_messages(self, chat: ChatSession) -> list[Message]:
        stmt = (
            select(Message)
            .where(Message.tenant_id == chat.tenant_id, Message.session_id == chat.id)
            .order_by(Message.seq)
        )
        return list((await self.session.scalars(stmt)).all())

    async def recent_messages(self, chat: ChatSession, limit: int) -> list[Message]:
        """The newest ``limit`` messages, oldest first (unanswered questions left out)."""
        stmt = (
            select(Message)
            .where(
                Message.tenant_id == chat.tenant_id,
                Message.session_id == chat.id,
                Message.status != "failed",
            )
            .order_by(Message.seq.desc())
            .limit(limit)
        )
        return list(reversed((await self.session.scalars(stmt)).all()))

    async def message_of_tenant(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> Message | None:
        """A message in one of the user's own sessions."""
        return await self.session.scalar(
            select(Message)
            .join(ChatSession, ChatSession.id == Message.session_id)
            .where(
                Message.id == message_id,
                Message.tenant_id == tenant_id,
                ChatSession.tenant_id == tenant_id,
                ChatSession.user_id == user_id,
            )
        )

    # --- purges -------------------------------------------------------------------------------

    async def delete_user(self, user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> None:
        """The user's sessions (messages and feedback cascade) and feedback they left."""
        sessions = delete(ChatSession).where(ChatSession.user_id == user_id)
        feedback = delete(Feedback).where(Feedback.user_id == user_id)
        if tenant_id is not None:
            sessions = sessions.where(ChatSession.tenant_id == tenant_id)
            feedback = feedback.where(Feedback.tenant_id == tenant_id)
        await self.session.execute(feedback)
        await self.session.execute(sessions)

    async def delete_knowledge_base(self, kb_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        """The knowledge base's sessions; messages and their feedback cascade."""
        await self.session.execute(
            delete(ChatSession).where(
                ChatSession.tenant_id == tenant_id, ChatSession.knowledge_base_id == kb_id
            )
        )

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        for table in (Feedback, Message, ChatSession, LLMSettings):
            await self.session.execute(delete(table).where(table.tenant_id == tenant_id))
