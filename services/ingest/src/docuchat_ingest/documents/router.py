from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from sse_starlette import EventSourceResponse

from docuchat_common.identity import Identity, require
from docuchat_common.pagination import Limit
from docuchat_common.service import DbSession, runtime_of
from docuchat_ingest.documents.schemas import (
    DocumentList,
    DocumentOut,
    UploadedArchiveOut,
    UploadedDocumentOut,
)
from docuchat_ingest.documents.service import DocumentService

router = APIRouter(prefix="/api/v1", tags=["documents"])

Reader = Annotated[Identity, Depends(require(scope="read"))]
Writer = Annotated[Identity, Depends(require(scope="write"))]
Status = Literal["queued", "processing", "indexed", "failed"]

# The body is parsed by hand while it streams (size limit), so describe it for OpenAPI.
_MULTIPART: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def document_service(request: Request) -> DocumentService:
    return DocumentService(runtime_of(request))


@router.post(
    "/knowledge-bases/{kb_id}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadedDocumentOut | UploadedArchiveOut,
    openapi_extra=_MULTIPART,
    responses={
        200: {
            "model": UploadedDocumentOut | UploadedArchiveOut,
            "description": "Duplicate content (every file of a ZIP already there)",
        }
    },
)
async def upload_document(
    kb_id: uuid.UUID, identity: Writer, request: Request, response: Response
) -> UploadedDocumentOut | UploadedArchiveOut:
    """One document, or with a ``.zip``, one document per supported file inside it."""
    result = await document_service(request).upload(
        identity,
        kb_id,
        stream=request.stream(),
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
    )
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/knowledge-bases/{kb_id}/documents", response_model=DocumentList)
async def list_documents(
    kb_id: uuid.UUID,
    *,
    identity: Reader,
    request: Request,
    session: DbSession,
    limit: Limit = 20,
    cursor: str | None = None,
    status: Status | None = None,
) -> DocumentList:
    return await document_service(request).list(
        session, identity, kb_id, limit=limit, cursor=cursor, status=status
    )


@router.get("/documents/{doc_id}", response_model=DocumentOut)
async def get_document(
    doc_id: uuid.UUID, identity: Reader, request: Request, session: DbSession
) -> DocumentOut:
    return await document_service(request).get(session, identity, doc_id)


@router.get("/documents/{doc_id}/events", response_class=EventSourceResponse)
async def document_events(
    doc_id: uuid.UUID, identity: Reader, request: Request
) -> EventSourceResponse:
    """Server-sent events: ``status`` with the document each time it moves, ending at indexed
    or failed (``event: done``)."""
    service = document_service(request)
    updates = service.watch(identity, doc_id)
    first = await anext(updates)  # a missing document is a 404, not an empty stream

    async def events() -> AsyncIterator[dict[str, str]]:
        document = first
        yield {"event": "status", "data": document.model_dump_json()}
        async for document in updates:
            yield {"event": "status", "data": document.model_dump_json()}
        yield {"event": "done", "data": document.model_dump_json()}

    return EventSourceResponse(events(), ping=15)


@router.delete("/documents/{doc_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(doc_id: uuid.UUID, identity: Writer, request: Request) -> Response:
    await document_service(request).delete(identity, doc_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/documents/{doc_id}/reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentOut,
)
async def reindex_document(
    doc_id: uuid.UUID, identity: Writer, request: Request, session: DbSession
) -> DocumentOut:
    return await document_service(request).reindex(session, identity, doc_id)
