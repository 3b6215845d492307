from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from docuchat_chat.feedback.repository import FeedbackRepository
from docuchat_chat.feedback.schemas import FeedbackIn, FeedbackOut
from docuchat_chat.feedback.service import FeedbackService
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_common.identity import Identity, require
from docuchat_common.service import DbSession

router = APIRouter(prefix="/api/v1/messages", tags=["feedback"])

Chatter = Annotated[Identity, Depends(require(scope="chat"))]


@router.post("/{message_id}/feedback", response_model=FeedbackOut)
async def rate_message(
    message_id: uuid.UUID, body: FeedbackIn, identity: Chatter, session: DbSession
) -> FeedbackOut:
    """Up or down, with an optional comment; rating again replaces the earlier rating."""
    service = FeedbackService(SessionRepository(session), FeedbackRepository(session))
    return await service.rate(identity, message_id, body)
