"""Liveness and readiness.

``/healthz`` says the process is alive (no dependency calls: a slow database must not get the
pod killed). ``/readyz`` runs every registered check with a timeout and answers 503 with the
failing ones, so the gateway and Kubernetes stop sending traffic until they recover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

ReadinessCheck = Callable[[], Awaitable[Any]]


class HealthChecks:
    def __init__(self, service: str, timeout: float = 2.0) -> None:
        self.service = service
        self.timeout = timeout
        self._checks: dict[str, ReadinessCheck] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def _run(self, check: ReadinessCheck) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except Exception as exc:
            return {
                "status": "down",
                "error": type(exc).__name__,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ok = all(r["status"] == "up" for r in checks.values())
        return ok, {
            "service": self.service,
            "status": "ready" if ok else "not_ready",
            "checks": checks,
        }

    def router(self) -> APIRouter:
        router = APIRouter(tags=["health"])

        @router.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"service": self.service, "status": "alive"}

        @router.get("/readyz")
        async def readyz() -> JSONResponse:
            ok, body = await self.readiness()
            return JSONResponse(body, status_code=200 if ok else 503)

        return router
