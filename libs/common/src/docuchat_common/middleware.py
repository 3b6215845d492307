"""Pure-ASGI middleware: request/correlation ids, access metrics, last-resort error answer.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses (SSE) pass through unbuffered.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docuchat_common.context import (
    CORRELATION_ID_HEADER,
    REQUEST_ID_HEADER,
    bound_context,
    new_id,
)
from docuchat_common.errors import problem_response
from docuchat_common.logging import get_logger
from docuchat_common.metrics import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS

log = get_logger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_UNTRACKED = {"/metrics"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text if _SAFE_ID.match(text) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or new_id()
        correlation_id = _header(scope, b"x-correlation-id") or request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers: list[Any] = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                if correlation_id != request_id:
                    headers.append(
                        (CORRELATION_ID_HEADER.lower().encode(), correlation_id.encode())
                    )
                message = {**message, "headers": headers}
            await send(message)

        HTTP_IN_FLIGHT.labels(self.service).inc()
        with bound_context(request_id=request_id, correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_ids)
            except Exception:
                log.exception("unhandled error", path=scope.get("path"))
                if not response_started:
                    response = problem_response(
                        500,
                        "internal_error",
                        "Internal server error",
                        "An unexpected error occurred; quote the request id when reporting it.",
                    )
                    await response(scope, receive, send_with_ids)
            finally:
                HTTP_IN_FLIGHT.labels(self.service).dec()
                path = scope.get("path", "")
                if path not in _UNTRACKED:
                    route = scope.get("route")
                    template = getattr(route, "path", None) or "unmatched"
                    method = scope.get("method", "GET")
                    HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
                    HTTP_LATENCY.labels(self.service, method, template).observe(
                        time.perf_counter() - started
                    )


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 ``payload_too_large`` for a request body over ``max_bytes``: at once when the
    declared Content-Length says so, else as soon as the streamed body passes it (a chunked
    body is counted, not trusted). Multipart uploads are left to their route, which enforces
    the plan's larger file limit while the file streams.

    The gateway does not limit bodies: Traefik's buffering middleware would also buffer
    responses, holding back streamed answers."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_upload(scope):
            await self.app(scope, receive, send)
            return
        declared = self._content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "payload_too_large",
            "Payload too large",
            f"the request body exceeds {self.max_bytes} bytes",
            extra={"max_body_bytes": self.max_bytes},
        )
        await response(scope, receive, send)

    @staticmethod
    def _is_upload(scope: Scope) -> bool:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"content-type":
                return bool(value.lower().startswith(b"multipart/form-data"))
        return False

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None
