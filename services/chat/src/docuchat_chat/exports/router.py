from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Response

from docuchat_chat.exports import render
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.sessions.service import SessionService, message_out, session_out
from docuchat_common.identity import Identity, require
from docuchat_common.service import DbSession

router = APIRouter(prefix="/api/v1/sessions", tags=["export"])

Chatter = Annotated[Identity, Depends(require(scope="chat"))]
Format = Literal["json", "txt", "md", "pdf"]

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
}


def _filename(title: str | None, fmt: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title or "chat").strip("-").lower()[:60] or "chat"
    return f"{slug}.{fmt}"


@router.get(
    "/{session_id}/export",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
async def export_session(
    session_id: uuid.UUID, identity: Chatter, session: DbSession, format: Format = "json"
) -> Response:
    """The session and its messages with their citations, as a file download."""
    service = SessionService(SessionRepository(session))
    chat = await service.owned(identity, session_id)
    rows = await SessionRepository(session).all_messages(chat)
    info, messages = session_out(chat), [message_out(m) for m in rows]
    if format == "pdf":  # layout is CPU work: off the event loop
        body = await anyio.to_thread.run_sync(render.to_pdf, info, messages)
    else:
        body = {"json": render.to_json, "txt": render.to_text, "md": render.to_markdown}[format](
            info, messages
        )
    return Response(
        body,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{_filename(chat.title, format)}"'},
    )
