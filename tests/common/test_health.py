from __future__ import annotations

import httpx
from fastapi import FastAPI

from docuchat_common.health import HealthChecks


async def test_readiness_reports_each_dependency_and_fails_when_one_is_down() -> None:
    health = HealthChecks("demo", timeout=0.5)

    async def up() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("refused")

    health.add("database", up)
    health.add("broker", down)
    app = FastAPI()
    app.include_router(health.router())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive even when not ready
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["broker"] == {
        "status": "down",
        "error": "ConnectionError",
        "latency_ms": body["checks"]["broker"]["latency_ms"],
    }
