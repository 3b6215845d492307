"""One exception hierarchy, rendered as RFC 9457 problem+json with a stable ``code``.

Clients switch on ``code``; ``title`` and ``detail`` are for humans. No stack trace ever leaves
the process: unexpected errors are logged with their trace and answered as ``internal_error``.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from docuchat_common.context import request_id_var
from docuchat_common.logging import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docuchat.dev/problems/"

log = get_logger(__name__)


class DocuChatError(Exception):
    """Base of every error a client may see. Subclasses fix ``status``, ``code`` and ``title``."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class BadRequest(DocuChatError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(DocuChatError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(DocuChatError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(DocuChatError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DocuChatError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(DocuChatError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(DocuChatError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(DocuChatError):
    status, code, title = 422, "validation_error", "Request is not valid"


class _RetryAfterError(DocuChatError):
    def __init__(self, detail: str | None = None, *, retry_after: float, **kwargs: Any) -> None:
        headers = {**kwargs.pop("headers", {}), "Retry-After": str(max(1, math.ceil(retry_after)))}
        super().__init__(detail, headers=headers, **kwargs)
        self.retry_after = retry_after


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked to wait (``Retry-After`` in seconds or as an HTTP date), when it
    did."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class QuotaExceeded(_RetryAfterError):
    status, code, title = 429, "quota_exceeded", "Plan quota exceeded"


class RateLimited(_RetryAfterError):
    status, code, title = 429, "rate_limited", "Too many requests"


class BadGateway(DocuChatError):
    status, code, title = 502, "upstream_error", "Upstream service failed"


class ServiceUnavailable(DocuChatError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
}


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


def _instance(request: Request) -> str:
    # Behind forward-auth the failing request is the client's, not /internal/forward-auth.
    # The path only: a browser's stream may carry its access token in the query. An unknown
    # path reaches a service rewritten by the gateway, which keeps the client's in
    # X-Replaced-Path.
    forwarded = request.headers.get("x-forwarded-uri") or request.headers.get("x-replaced-path")
    return forwarded.partition("?")[0] if forwarded else request.url.path


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocuChatError)
    async def _docuchat_error(request: Request, exc: DocuChatError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed", code=exc.code, detail=exc.detail, path=request.url.path)
        return problem_response(
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            headers=exc.headers,
            extra=exc.extra,
            instance=_instance(request),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            422,
            "validation_error",
            "Request is not valid",
            "One or more fields are invalid; see errors.",
            extra={"errors": _validation_errors(exc.errors())},
            instance=_instance(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(
            exc.status_code,
            code,
            title,
            detail,
            headers=getattr(exc, "headers", None),
            instance=_instance(request),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            500,
            "internal_error",
            "Internal server error",
            "An unexpected error occurred; quote the request id when reporting it.",
            instance=_instance(request),
        )
