"""A service's runtime: its settings, database, broker, outbox relay, consumers and HTTP app.

Every service builds one :class:`ServiceRuntime`; ``docuchat run --target X`` starts the ones
its target needs, in one process or many. The HTTP app's lifespan starts and stops the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from faststream.kafka import KafkaBroker
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from docuchat_common.db import Database, ensure_database, migrate
from docuchat_common.errors import install_error_handlers
from docuchat_common.events.bus import (
    BrokerEpochWatchdog,
    ConsumerLagMonitor,
    create_broker,
    subscriber_restarter,
)
from docuchat_common.events.consumer import EventConsumers
from docuchat_common.events.envelope import Event
from docuchat_common.events.housekeeping import (
    EventTableJanitor,
    processed_claims,
    published_outbox,
)
from docuchat_common.events.outbox import Outbox, OutboxRelay
from docuchat_common.events.topics import all_topics_with_dlq
from docuchat_common.health import HealthChecks
from docuchat_common.identity import JWKSCache, TokenVerifier
from docuchat_common.logging import get_logger
from docuchat_common.memory import release_garbage_collector, tune_garbage_collector
from docuchat_common.metrics import metrics_router
from docuchat_common.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from docuchat_common.quota import QuotaGuard
from docuchat_common.settings import ServiceSettings
from docuchat_common.telemetry import configure_tracing, redact_server_span

log = get_logger(__name__)

Hook = Callable[["ServiceRuntime"], Awaitable[None]]


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        settings: ServiceSettings,
        metadata: MetaData,
        migrations_dir: Path,
        routers: Sequence[APIRouter] = (),
        title: str | None = None,
        version: str = "0.1.0",
        run_relay: bool = True,
        run_consumers: bool = True,
        publishes: Sequence[type[Event[Any]]] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        self.metadata = metadata
        self.migrations_dir = migrations_dir
        self.routers = list(routers)
        self.title = title or f"DocuChat {name}"
        self.version = version
        self.run_relay = run_relay and settings.relay_enabled
        self.run_consumers = run_consumers and settings.consume_events

        self.database = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.broker: KafkaBroker = create_broker(settings, name)
        self.outbox = Outbox(self._table("outbox"))
        self.consumers = EventConsumers(
            broker=self.broker,
            database=self.database,
            processed_table=self._table("processed_events"),
            service=name,
            max_attempts=settings.consumer_max_attempts,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            group_prefix=settings.consumer_group_prefix,
        )
        self.relay = OutboxRelay(
            service=name,
            database=self.database,
            table=self._table("outbox"),
            broker=self.broker,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=all_topics_with_dlq(),
        )
        self.publishes = tuple(publishes)
        self._declare_publishers()
        self.health = HealthChecks(name)
        self.health.add("database", self.database.ping)
        self.health.add("broker", self._broker_ready)
        self.token_verifier = TokenVerifier(
            JWKSCache(settings.jwks_url, ttl_seconds=settings.jwks_cache_seconds),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        self.lag_monitor = ConsumerLagMonitor(self.broker, name)
        self.epoch_watchdog = (
            BrokerEpochWatchdog(settings.kafka_bootstrap_servers, all_topics_with_dlq())
            if settings.kafka_ephemeral_broker
            else None
        )
        self.janitor = EventTableJanitor(
            self.database,
            [
                published_outbox(timedelta(hours=settings.outbox_retention_hours)),
                processed_claims(timedelta(hours=settings.claim_retention_hours)),
            ],
            interval=settings.housekeeping_interval_seconds,
        )
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self.state: dict[str, Any] = {}

    def _declare_publishers(self) -> None:
        """Declare what this service publishes (through its outbox) so that the AsyncAPI
        document generated from the broker lists it beside the subscribers."""
        from docuchat_common.events.catalog import event_union

        by_topic: dict[str, list[type[Event[Any]]]] = {}
        for event in self.publishes:
            by_topic.setdefault(event.topic.name, []).append(event)
        for topic, events in by_topic.items():
            self.broker.publisher(
                topic,
                title=f"{self.name}:{topic}",
                description=", ".join(e.model_fields["type"].default for e in events),
                schema=event_union(*events),
            )

    def _table(self, name: str) -> Table:
        return self.metadata.tables[name]

    def on_start(self, hook: Hook) -> Hook:
        self._on_start.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        self._on_stop.append(hook)
        return hook

    def enforce_quotas(self) -> QuotaGuard:
        """The tenants' quota state (usage's quota.changed), in memory before serving: a guard
        in ``state["quota"]``, a readiness check until it has loaded. The services of one
        process (all-in-one) share one reader of the topic."""
        guard = QuotaGuard(self.settings.kafka_bootstrap_servers, service=self.name, shared=True)
        self.state["quota"] = guard
        self.health.add("quota", guard.check_ready)

        async def start(_: ServiceRuntime) -> None:
            await guard.start()

        async def stop(_: ServiceRuntime) -> None:
            await guard.stop()

        self.on_start(start)
        self.on_stop(stop)
        return guard

    async def _broker_ready(self) -> None:
        if not await self.broker.ping(timeout=2):
            raise ConnectionError("broker unreachable")

    async def migrate(self) -> None:
        if await ensure_database(self.settings.database_url):
            log.info("database created", service=self.name)
        await migrate(self.migrations_dir, self.settings.database_url)

    async def start(self) -> None:
        configure_tracing(
            "docuchat",
            otlp_endpoint=self.settings.otlp_endpoint,
            sample_ratio=self.settings.trace_sample_ratio,
        )
        if self.settings.migrate_on_start:
            await self.migrate()
        # Hooks prepare what handlers need (models, stores, caches) before anything is consumed.
        for hook in self._on_start:
            await hook(self)
        tune_garbage_collector(self.settings.gc_young_threshold)
        if not self.run_consumers:
            self.broker._subscribers.clear()
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(60),
            wait=wait_exponential(multiplier=0.2, max=3),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        ):
            with attempt:
                await self.broker.start()
        if self.run_relay:
            await self.relay.start()
        self.lag_monitor.start()
        self.janitor.start()
        if self.epoch_watchdog is not None:
            if self.run_relay:
                self.epoch_watchdog.on_new_epoch(self.relay.replay)
            if self.run_consumers:
                self.epoch_watchdog.on_new_epoch(subscriber_restarter(self.broker))
            self.epoch_watchdog.start()
        log.info(
            "service started",
            service=self.name,
            consumers=[g for g, _ in self.consumers.groups] if self.run_consumers else [],
            relay=self.run_relay,
        )

    async def stop(self) -> None:
        # The reverse of start: consumers stop (an in-flight message is finished within the
        # broker's graceful timeout, or abandoned uncommitted and redelivered) before the
        # hooks release what handlers use (models, stores, the parser process).
        async with _step("lag monitor"):
            await self.lag_monitor.stop()
        async with _step("event table housekeeping"):
            await self.janitor.stop()
        if self.epoch_watchdog is not None:
            async with _step("epoch watchdog"):
                await self.epoch_watchdog.stop()
        async with _step("outbox relay"):
            await self.relay.stop()
        async with _step("consumers"):
            await self.consumers.stop(self.settings.consumer_graceful_timeout_seconds)
        for hook in reversed(self._on_stop):
            with contextlib.suppress(Exception):
                async with _step(getattr(hook, "__qualname__", "stop hook")):
                    await hook(self)
        async with _step("database"):
            await self.database.dispose()
        release_garbage_collector()
        log.info("service stopped", service=self.name)

    def create_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=self.title, version=self.version, lifespan=lifespan)
        app.state.runtime = self
        app.state.token_verifier = self.token_verifier
        install_error_handlers(app)
        app.include_router(self.health.router())
        app.include_router(metrics_router())
        for router in self.routers:
            app.include_router(router)
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # No span per ASGI message (each body chunk of a stream would get one): the request's
        # server span and its children say where the time went.
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls="healthz,readyz,metrics",
            exclude_spans=["receive", "send"],
            server_request_hook=redact_server_span,
        )
        app.add_middleware(BodySizeLimitMiddleware, max_bytes=self.settings.max_request_body_bytes)
        app.add_middleware(RequestContextMiddleware, service=self.name)
        return app


@contextlib.asynccontextmanager
async def _step(name: str, warn_after: float = 10.0) -> AsyncIterator[None]:
    """A stop step that takes longer than expected says which it is, while it still runs: a
    stop that never ends is otherwise silent."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    handle = loop.call_later(
        warn_after, lambda: log.warning("stop step still running", step=name, after_s=warn_after)
    )
    try:
        yield
    finally:
        handle.cancel()
        elapsed = loop.time() - started
        if elapsed > warn_after:
            log.warning("stop step was slow", step=name, seconds=round(elapsed, 1))


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with runtime_of(request).database.transaction() as session:
        yield session


# The request is the unit of work: committed when the endpoint returns, before the response is
# sent (scope="function"), rolled back if it raises.
DbSession = Annotated[AsyncSession, Depends(_session, scope="function")]
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]
