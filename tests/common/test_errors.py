"""Errors reach clients as RFC 9457 problem+json with a stable code, never a stack trace."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from docuchat_common.errors import NotFound, QuotaExceeded, install_error_handlers
from docuchat_common.middleware import RequestContextMiddleware


class Body(BaseModel):
    name: str
    size: int


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service="test")

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("document not found", code="document_not_found")

    @app.get("/quota")
    async def quota() -> None:
        raise QuotaExceeded("daily tokens spent", retry_after=42.3)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @app.post("/items")
    async def items(body: Body) -> Body:
        return body

    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(), raise_app_exceptions=False), base_url="http://t"
    )


def _problem(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == response.status_code
    return body


async def test_domain_errors_carry_their_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/missing", headers={"X-Request-Id": "abc-123"})
    assert response.status_code == 404
    body = _problem(response)
    assert body["code"] == "document_not_found"
    assert body["detail"] == "document not found"
    assert body["request_id"] == "abc-123"
    assert response.headers["x-request-id"] == "abc-123"


async def test_quota_errors_say_when_to_retry(client: httpx.AsyncClient) -> None:
    response = await client.get("/quota")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "43"
    assert _problem(response)["code"] == "quota_exceeded"


async def test_unexpected_errors_hide_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    body = _problem(response)
    assert body["code"] == "internal_error"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"]


async def test_validation_and_routing_errors_are_problems_too(client: httpx.AsyncClient) -> None:
    invalid = await client.post("/items", json={"name": "x", "size": "big"})
    assert invalid.status_code == 422
    body = _problem(invalid)
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["body", "size"]  # type: ignore[index]

    assert _problem(await client.get("/nowhere"))["code"] == "not_found"
    assert _problem(await client.delete("/missing"))["code"] == "method_not_allowed"


async def test_a_hostile_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/missing", headers={"X-Request-Id": "bad id\r\nInjected: 1"})
    assert response.headers["x-request-id"] != "bad id\r\nInjected: 1"
    assert len(response.headers["x-request-id"]) == 36
