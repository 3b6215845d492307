"""Asking: POST /sessions/{id}/messages (JSON or server-sent events) and the same exchange
over a WebSocket."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, cast

import anyio
import jwt
from fastapi import APIRouter, Depends, Request, WebSocket, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from docuchat_chat.answering.retrieval import identity_headers
from docuchat_chat.answering.schemas import QuestionIn
from docuchat_chat.answering.service import AnswerService, AnswerStream, Deps
from docuchat_chat.sessions.schemas import MessageOut
from docuchat_chat.settings import ChatSettings
from docuchat_common.errors import DocuChatError, Forbidden, Unauthorized, problem_response
from docuchat_common.identity import (
    IDENTITY_HEADER,
    INTERNAL_AUDIENCE,
    Identity,
    bearer_token,
    require,
)
from docuchat_common.logging import get_logger
from docuchat_common.service import runtime_of

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/sessions", tags=["chat"])

Chatter = Annotated[Identity, Depends(require(scope="chat"))]


def answer_service(connection: HTTPConnection) -> AnswerService:
    deps: Deps = runtime_of(connection).state["answering"]  # type: ignore[arg-type]
    return AnswerService(deps)


def _sse(event: str, data: Any) -> dict[str, str]:
    return {"event": event, "data": json.dumps(data)}


def _error_data(error: DocuChatError) -> dict[str, Any]:
    return {"code": error.code, "detail": error.detail, "status": error.status}


@router.post(
    "/{session_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": "stream=true"}},
)
async def ask(session_id: uuid.UUID, body: QuestionIn, identity: Chatter, request: Request) -> Any:
    service = answer_service(request)
    question = await service.ask(identity, session_id, body.content, identity_headers(request))
    if not body.stream:
        answer = await service.complete(question)
        return JSONResponse(answer.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)
    run = service.stream(question)
    await run.start()  # a provider that fails before its first token is a problem response
    grace = cast(ChatSettings, runtime_of(request).settings).stream_shutdown_grace_seconds
    shutdown = anyio.Event()
    return EventSourceResponse(
        _events(run, shutdown, grace), ping=15, shutdown_event=shutdown, shutdown_grace_period=grace
    )


async def _events(
    run: AnswerStream, shutdown: anyio.Event, grace: float
) -> AsyncIterator[dict[str, str]]:
    """The answer as events. When the server begins to shut down, the answer may go on for
    most of the grace period; one still running then is cut *with a final event* (the client
    learns the answer so far is stored) before the server would cancel it silently."""
    farewell_at: float | None = None
    deltas = run.deltas()
    try:
        async for text in deltas:
            yield _sse("token", {"text": text})
            if shutdown.is_set():
                now = anyio.current_time()
                farewell_at = farewell_at or now + grace - min(2.0, grace / 2)
                if now >= farewell_at:
                    break
        else:
            farewell_at = None
    except DocuChatError as exc:
        yield _sse("error", _error_data(exc))
        return
    except BaseException:
        # The client went away (cancelled, or closed at a yield): store what came, meter it.
        with anyio.CancelScope(shield=True):
            await run.abandon()
        raise
    if farewell_at is not None:
        await deltas.aclose()
        with anyio.CancelScope(shield=True):
            await run.abandon()
        yield _sse(
            "error",
            {
                "code": "shutting_down",
                "status": 503,
                "detail": "the server is restarting: the answer so far is stored; ask again",
            },
        )
        return
    with anyio.CancelScope(shield=True):
        answer = await run.finish()
    yield _sse("citations", [c.model_dump(mode="json") for c in answer.citations])
    yield _sse("done", {"message_id": str(answer.id), "usage": _usage(answer)})


def _usage(answer: MessageOut) -> dict[str, int | bool]:
    return answer.usage.model_dump() if answer.usage else {}


# --- WebSocket ---------------------------------------------------------------------------------


# A question on a socket older than its identity token would be refused by ingest: the client
# reconnects (through the gateway, which issues a fresh one) when told the token has expired.
EXPIRY_MARGIN_SECONDS = 5


def _expired(identity: Identity) -> bool:
    if identity.raw_token is None:
        return False
    claims = jwt.decode(identity.raw_token, options={"verify_signature": False})
    return float(claims.get("exp", 0)) - EXPIRY_MARGIN_SECONDS <= time.time()


async def _ws_identity(websocket: WebSocket) -> Identity:
    """Like HTTP: the gateway's internal token, or a bearer token (service to service, tests)."""
    verifier = websocket.app.state.token_verifier
    internal = websocket.headers.get(IDENTITY_HEADER)
    if internal:
        identity: Identity = await verifier.identity(internal, audience=INTERNAL_AUDIENCE)
    else:
        token = bearer_token(websocket)
        if token is None or token.startswith("dck_"):
            raise Unauthorized("missing credentials")
        identity = await verifier.identity(token)
    if identity.via == "api_key" and not identity.has_scope("chat"):
        raise Forbidden("API key lacks the 'chat' scope", code="insufficient_scope")
    return identity


@router.websocket("/{session_id}/ws")
async def ask_over_websocket(websocket: WebSocket, session_id: uuid.UUID) -> None:
    """Client frames: ``{"content": "..."}``. Server frames: ``{"type": "token", "text"}``,
    ``{"type": "citations", "citations"}``, ``{"type": "done", "message_id", "usage"}``,
    ``{"type": "error", "code", "detail", "status"}``. One question at a time."""
    service = answer_service(websocket)
    try:
        identity = await _ws_identity(websocket)
        # Another tenant's or user's session is a 404 at the upgrade, as it is over HTTP.
        await service.session_of(identity, session_id)
    except DocuChatError as exc:
        await _refuse(websocket, exc)
        return
    headers = identity_headers(websocket)
    await websocket.accept()
    try:
        while True:
            frame = await websocket.receive_text()
            try:
                content = QuestionIn.model_validate_json(frame).content
            except ValidationError:
                await websocket.send_json(
                    {
                        "type": "error",
                        "code": "validation_error",
                        "detail": 'send {"content": "<your question>"}',
                        "status": 422,
                    }
                )
                continue
            if _expired(identity):
                await websocket.send_json(
                    {
                        "type": "error",
                        "code": "token_expired",
                        "detail": "the connection's credentials expired; reconnect",
                        "status": 401,
                    }
                )
                await websocket.close(code=4401, reason="token_expired")
                return
            if not await _answer_over(
                websocket,
                service=service,
                identity=identity,
                session_id=session_id,
                content=content,
                headers=headers,
            ):
                return
    except WebSocketDisconnect:
        return


async def _refuse(websocket: WebSocket, error: DocuChatError) -> None:
    """Refuse the upgrade with the answer an HTTP route would give (problem+json), where the
    server can send one (ASGI's WebSocket denial response); else close with 4000 + status."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            problem_response(
                error.status,
                error.code,
                error.title,
                error.detail,
                headers=error.headers,
                instance=websocket.url.path,
            )
        )
    else:
        await websocket.close(code=4000 + error.status, reason=error.code)


async def _answer_over(
    websocket: WebSocket,
    *,
    service: AnswerService,
    identity: Identity,
    session_id: uuid.UUID,
    content: str,
    headers: Mapping[str, str],
) -> bool:
    """One exchange; False when the client went away."""
    try:
        if service.deps.quota is not None:  # per question, as each HTTP POST is counted
            service.deps.quota.check_rate(identity.tenant_id)
        question = await service.ask(identity, session_id, content, headers)
        run = service.stream(question)
        await run.start()
    except DocuChatError as exc:
        await websocket.send_json({"type": "error", **_error_data(exc)})
        return True
    try:
        async for text in run.deltas():
            await websocket.send_json({"type": "token", "text": text})
    except DocuChatError as exc:
        await websocket.send_json({"type": "error", **_error_data(exc)})
        return True
    except (WebSocketDisconnect, OSError, RuntimeError):  # a send to a client that went away
        with anyio.CancelScope(shield=True):
            await run.abandon()
        return False
    except BaseException:  # cancelled (server shutting down): still store what came
        with anyio.CancelScope(shield=True):
            await run.abandon()
        raise
    answer = await run.finish()
    await websocket.send_json(
        {"type": "citations", "citations": [c.model_dump(mode="json") for c in answer.citations]}
    )
    await websocket.send_json(
        {"type": "done", "message_id": str(answer.id), "usage": _usage(answer)}
    )
    return True
