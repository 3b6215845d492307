"""An auth service in-process on this test's database and the session broker, called over
HTTP (httpx ASGI transport): the real app, lifespan included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from docuchat_auth.app import build_runtime
from docuchat_auth.mail import Mail, read_mails
from docuchat_auth.settings import AuthSettings
from docuchat_common.service import ServiceRuntime


@dataclass
class AuthService:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    settings: AuthSettings

    def mails(self, to: str | None = None) -> list[Mail]:
        return [m for m in read_mails(self.settings.mail_file) if to is None or m.to == to]

    async def register(
        self, email: str, password: str = "correct horse battery staple", tenant: str = "Acme"
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password, "tenant_name": tenant},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def auth(settings_for: Any, tmp_path: Path) -> AsyncIterator[AuthService]:
    # No consumers: joining a consumer group costs seconds per test and auth tests need none.
    settings: AuthSettings = settings_for(
        AuthSettings, "auth", mail_file=tmp_path / "mail.jsonl", consume_events=False
    )
    runtime = build_runtime(settings)
    app = runtime.create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
            yield AuthService(runtime, client, settings)
