"""Per-request / per-message context: request id, correlation id, tenant id.

Stored in contextvars so that logs, outbox rows and outgoing Kafka headers pick them up
wherever they are written, without threading them through every call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
tenant_id_var: ContextVar[str | None] = ContextVar("tenant_id", default=None)

REQUEST_ID_HEADER = "X-Request-Id"
CORRELATION_ID_HEADER = "X-Correlation-Id"
# Kafka header names (lower-case, like W3C traceparent).
KAFKA_CORRELATION_HEADER = "correlation_id"


def new_id() -> str:
    return str(uuid.uuid4())


def current_correlation_id() -> str | None:
    return correlation_id_var.get()


def bind_tenant(tenant_id: str | uuid.UUID | None) -> None:
    value = str(tenant_id) if tenant_id is not None else None
    tenant_id_var.set(value)
    structlog.contextvars.bind_contextvars(tenant_id=value)


@contextmanager
def bound_context(
    *,
    request_id: str | None = None,
    correlation_id: str | None = None,
    tenant_id: str | None = None,
) -> Iterator[None]:
    """Bind ids for the duration of a request or a message, then restore what was there."""
    tokens = [
        request_id_var.set(request_id),
        correlation_id_var.set(correlation_id),
        tenant_id_var.set(tenant_id),
    ]
    values = {"request_id": request_id, "correlation_id": correlation_id, "tenant_id": tenant_id}
    with structlog.contextvars.bound_contextvars(
        **{k: v for k, v in values.items() if v is not None}
    ):
        try:
            yield
        finally:
            for var, token in zip(
                (request_id_var, correlation_id_var, tenant_id_var), tokens, strict=True
            ):
                var.reset(token)
