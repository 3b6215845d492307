"""One stack per mode for the whole e2e package: all-in-one, then split."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig


@pytest.fixture(scope="package", params=["all-in-one", "split"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp(f"stack-{request.param}"),
        gateway_port=free_port(),
        postgres_port=None,
        kafka_port=None,
        base_service_port=0,
        split=request.param == "split",
        fast_postgres=True,
        environment="test",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
    )
    stack = DevStack(config)
    stack.start()
    pids = [p.pid for p in stack.processes.values()] + [
        stack.postgres.pid,
        stack.broker.pid,
        stack.gateway.pid,
    ]
    try:
        yield stack
    finally:
        stack.stop()
    alive = [
        pid
        for pid in pids
        if pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    assert alive == [], f"processes left behind: {alive}"


@pytest.fixture
async def gateway(stack: DevStack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.gateway_url, timeout=15)
