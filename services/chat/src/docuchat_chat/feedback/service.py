from __future__ import annotations

import uuid

from docuchat_chat.feedback.repository import FeedbackRepository
from docuchat_chat.feedback.schemas import FeedbackIn, FeedbackOut
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_common.errors import NotFound, Unprocessable
from docuchat_common.identity import Identity


class FeedbackService:
    def __init__(self, sessions: SessionRepository, feedback: FeedbackRepository) -> None:
        self.sessions = sessions
        self.feedback = feedback

    async def rate(
        self, identity: Identity, message_id: uuid.UUID, body: FeedbackIn
    ) -> FeedbackOut:
        message = await self.sessions.message_of_tenant(
            identity.tenant_id, identity.user_id, message_id
        )
        if message is None:
            raise NotFound("message not found", code="message_not_found")
        if message.role != "assistant":
            raise Unprocessable("only answers can be rated", code="not_an_answer")
        row = await self.feedback.upsert(
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            message_id=message.id,
            rating=body.rating,
            comment=body.comment,
        )
        return FeedbackOut(
            message_id=row.message_id,
            rating=body.rating,
            comment=row.comment,
            updated_at=row.updated_at,
        )
