"""A usage service in-process on this test's database and the session broker, over HTTP, with
its consumers running; events are published the way chat and ingest publish them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from docuchat_common.events.envelope import Event
from docuchat_usage.app import build_runtime
from docuchat_usage.settings import UsageSettings
from tests.in_process import InProcessService, serve


class UsageService(InProcessService):
    def token(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None, role: str = "owner"
    ) -> dict[str, str]:
        return self.signer.headers(tenant_id, user_id, role)

    async def publish(self, *events: Event[Any], raw: Sequence[bytes] = ()) -> None:
        await super().publish(*events)
        for value in raw:
            await self.producer.send_and_wait("docuchat.tokens", value, key=b"x")


@pytest.fixture
async def usage(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[UsageService]:
    settings: UsageSettings = settings_for(
        UsageSettings, "usage", quota_reset_interval_seconds=3600
    )
    async with serve(
        build_runtime(settings), infra.bootstrap_servers, tmp_path / "keys"
    ) as service:
        yield UsageService(service.runtime, service.client, service.signer, service.producer)
