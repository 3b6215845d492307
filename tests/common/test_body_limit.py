"""Request bodies over the limit are refused with 413 problem+json, whether the client declares
the size or streams it chunked; multipart uploads are left to their route's own limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from docuchat_common.errors import install_error_handlers
from docuchat_common.middleware import BodySizeLimitMiddleware, RequestContextMiddleware

LIMIT = 1000


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=LIMIT)
    app.add_middleware(RequestContextMiddleware, service="test")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_body_within_the_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.json() == {"received": LIMIT}


async def test_a_declared_oversized_body_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["max_body_bytes"] == LIMIT
    assert response.headers["x-request-id"]


async def test_a_chunked_body_is_counted_not_trusted(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 400

    response = await client.post("/echo", content=chunks())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_multipart_uploads_are_left_to_their_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", files={"file": ("a.txt", b"z" * (LIMIT * 3))})
    assert response.status_code == 200
    assert response.json()["received"] > LIMIT * 3
