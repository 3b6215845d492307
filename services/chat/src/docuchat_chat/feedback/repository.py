from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_chat.models import Feedback


class FeedbackRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(
        self,
        *,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        message_id: uuid.UUID,
        rating: str,
        comment: str | None,
    ) -> Feedback:
        """One rating per message and user: a second one replaces the first."""
        stmt = insert(Feedback).values(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            user_id=user_id,
            message_id=message_id,
            rating=rating,
            comment=comment,
        )
        upsert = stmt.on_conflict_do_update(
            index_elements=[Feedback.message_id, Feedback.user_id],
            set_={"rating": rating, "comment": comment, "updated_at": func.now()},
        ).returning(Feedback)
        row: Feedback = (await self.session.execute(upsert)).scalar_one()
        return row
