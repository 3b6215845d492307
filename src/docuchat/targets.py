"""Targets (Loki's ``-target``): which roles this process runs.

``all`` runs every service in one process, each on its own port, so the gateway's routes are
the same whether the services share a process or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from docuchat_common.logging import get_logger
from docuchat_common.service import ServiceRuntime

log = get_logger(__name__)

TARGETS = ("all", "auth", "ingest", "ingest-worker", "chat", "usage", "relay")
SERVICES = ("auth", "ingest", "chat", "usage")


def _auth() -> ServiceRuntime:
    from docuchat_auth.app import build_runtime

    return build_runtime()


def _ingest(role: str) -> Callable[[], ServiceRuntime]:
    def build() -> ServiceRuntime:
        from docuchat_ingest.app import build_runtime

        return build_runtime(role=role)

    return build


def _chat() -> ServiceRuntime:
    from docuchat_chat.app import build_runtime

    return build_runtime()


def _usage() -> ServiceRuntime:
    from docuchat_usage.app import build_runtime

    return build_runtime()


def _ingest_service() -> ServiceRuntime:
    """The ingest target: the API alone when the vectors live in a Qdrant server (workers are
    their own ``ingest-worker`` processes, scaled apart); API and worker in one process with
    the embedded store, whose shard only one process may own."""
    from docuchat_ingest.app import build_runtime
    from docuchat_ingest.settings import IngestSettings

    settings = IngestSettings()
    return build_runtime(settings, role="api" if settings.qdrant_url else "all")


BUILDERS: dict[str, Callable[[], ServiceRuntime]] = {
    "auth": _auth,
    "ingest": _ingest_service,
    "ingest-worker": _ingest("worker"),
    "chat": _chat,
    "usage": _usage,
}

TARGET_ROLES: dict[str, tuple[str, ...]] = {
    "all": ("auth", "ingest-all", "chat", "usage"),
    **{name: (name,) for name in BUILDERS},
}


def build_runtimes(target: str) -> list[ServiceRuntime]:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    if target == "relay":
        # The relay role alone: every service's outbox, no HTTP routes, no consumers.
        runtimes = [_auth(), _ingest("relay")(), _chat(), _usage()]
        for rt in runtimes:
            rt.routers.clear()
            rt.run_consumers = False
            rt.name = f"relay-{rt.name}"
        return runtimes
    if target == "all":
        return [_auth(), _ingest("all")(), _chat(), _usage()]
    return [BUILDERS[target]()]


class _Server(uvicorn.Server):
    """Several servers share one loop: signals are handled once, by :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Served:
    name: str
    app: FastAPI
    host: str
    port: int


def plan(target: str) -> list[Served]:
    runtimes = build_runtimes(target)
    if target != "relay":
        return [Served(rt.name, rt.create_app(), rt.settings.host, _port(rt)) for rt in runtimes]
    return [Served("relay", relay_app(runtimes), runtimes[0].settings.host, relay_port())]


def _port(runtime: ServiceRuntime) -> int:
    if runtime.name == "ingest-worker":  # shares the ingest settings, not its port
        return int(os.environ.get("DOCUCHAT_INGEST_WORKER_PORT", "8105"))
    return runtime.settings.port


def relay_port() -> int:
    return int(os.environ.get("DOCUCHAT_RELAY_PORT", "8106"))


def relay_app(runtimes: list[ServiceRuntime]) -> FastAPI:
    """One HTTP app (health, metrics) for the relay role, which runs every service's relay."""
    from docuchat_common.health import HealthChecks
    from docuchat_common.metrics import metrics_router

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for rt in runtimes:
                await rt.start()
                stack.push_async_callback(rt.stop)
            yield

    app = FastAPI(title="DocuChat relay", lifespan=lifespan)
    health = HealthChecks("relay")
    for rt in runtimes:
        health.add(f"{rt.name}.database", rt.database.ping)
    app.include_router(health.router())
    app.include_router(metrics_router())
    return app


async def serve(served: list[Served]) -> None:
    """Run the apps until SIGINT/SIGTERM; then drain in-flight requests and stop."""
    servers = [
        _Server(
            uvicorn.Config(
                s.app,
                host=s.host,
                port=s.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=20,
                proxy_headers=True,
                # Whose X-Forwarded-For to believe (the gateway's address): client IPs feed the
                # per-IP brute-force limits.
                forwarded_allow_ips=os.environ.get("DOCUCHAT_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            )
        )
        for s in served
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("stopping", servers=len(servers))
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.gather(*tasks)
    finally:
        stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    failed = [s.name for s, server in zip(served, servers, strict=False) if not server.started]
    if failed:
        raise SystemExit(f"failed to start: {', '.join(failed)}")
