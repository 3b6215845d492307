"""The service's Kafka broker (FastStream over aiokafka), with tracing and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware

from docuchat_common.events.consumer import dead_letter_middleware
from docuchat_common.events.topics import CONSUMER_TIMEOUT_MS, Topic, ensure_topics
from docuchat_common.logging import get_logger
from docuchat_common.metrics import CONSUMER_LAG, registry
from docuchat_common.settings import ServiceSettings
from docuchat_common.tasks import stop_task

log = get_logger(__name__)


class ServiceBroker(KafkaBroker):
    """FastStream's Kafka broker, but its subscribers start side by side.

    FastStream starts them one after another, and each waits until its group has assigned it
    partitions: a group join takes about a second on tansu (Kafka delays a new group's first
    rebalance by ``group.initial.rebalance.delay.ms``, 3 s by default), so a service with five
    consumers spent five of them before it was ready.
    """

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


def create_broker(settings: ServiceSettings, service: str) -> KafkaBroker:
    extra: dict[str, Any] = {}
    if settings.kafka_enable_idempotence:
        extra["enable_idempotence"] = True
        extra["acks"] = "all"
    dead_letters, bind_dead_letters = dead_letter_middleware(service)
    broker = ServiceBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"docuchat-{service}{settings.kafka_client_id_suffix}",
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        graceful_timeout=settings.consumer_graceful_timeout_seconds,
        middlewares=[
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=registry, app_name=service),
            dead_letters,
        ],
        logger=get_logger(f"docuchat.{service}.kafka"),
        # FastStream's "Received"/"Processed" line per message and consumer is debug: the
        # handlers log each event they act on (type, id, correlation), failures stay errors.
        log_level=logging.DEBUG,
        **extra,
    )
    bind_dead_letters(broker)
    return broker


class ConsumerLagMonitor:
    """Publishes ``docuchat_consumer_lag_messages`` for every partition the broker's consumers
    own (high watermark - position), the figure KEDA scales workers on."""

    def __init__(self, broker: KafkaBroker, service: str, interval: float = 5.0) -> None:
        self.broker = broker
        self.service = service
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lag-monitor-{self.service}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def sample(self) -> None:
        for sub in self.broker.subscribers:
            consumer = getattr(sub, "consumer", None)
            group = getattr(consumer, "_group_id", None) or "none"
            if consumer is None:
                continue
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await consumer.position(tp)
                CONSUMER_LAG.labels(self.service, tp.topic, group, str(tp.partition)).set(
                    max(0, highwater - position)
                )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sample()
            await asyncio.sleep(self.interval)


EPOCH_TOPIC = "docuchat.broker-epoch"

EpochCallback = Callable[[], Awaitable[None]]


class BrokerEpochWatchdog:
    """Notices when the broker has lost its state, and lets the process recover.

    The embedded broker (tansu, memory storage) forgets every topic, message and committed
    offset when it restarts. Consumers would keep stale positions and skip messages; messages
    the old broker had accepted but nobody had read yet are gone. The first message of the
    one-partition ``docuchat.broker-epoch`` topic names the broker's incarnation: when it
    changes, the registered callbacks run (the relay replays its outbox, subscribers restart
    from the earliest offset) and idempotent consumers make the replay harmless. Off for a
    durable Kafka (``kafka_ephemeral_broker``), where none of this happens.
    """

    def __init__(self, bootstrap_servers: str, topics: list[Topic], interval: float = 1.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.interval = interval
        self.epoch: bytes | None = None
        self._reader: Any = None
        self._callbacks: list[EpochCallback] = []
        self._task: asyncio.Task[None] | None = None

    def on_new_epoch(self, callback: EpochCallback) -> None:
        self._callbacks.append(callback)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-epoch-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._close_reader()

    async def current_epoch(self) -> bytes:
        """The first message of the epoch topic, written by whoever finds the topic empty.

        One consumer is kept between checks (a check a second per service must stay cheap);
        it is replaced after any error, which is how a restarted broker shows itself."""
        import uuid

        from aiokafka import AIOKafkaProducer

        try:
            consumer, tp = await self._epoch_reader()
            for _ in range(2):
                consumer.seek(tp, 0)
                consumer.resume(tp)
                try:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                finally:
                    # Between checks: an assigned partition is fetched in the background
                    # (twice a second per process on a broker that holds an empty fetch).
                    consumer.pause(tp)
                if batch.get(tp):
                    value: bytes = batch[tp][0].value
                    return value
                # A new broker: mark it. If several processes race, the first message wins.
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers)
                await producer.start()
                try:
                    await producer.send_and_wait(EPOCH_TOPIC, uuid.uuid4().bytes, partition=0)
                finally:
                    await producer.stop()
            raise RuntimeError("broker epoch marker unreadable")
        except BaseException:
            await self._close_reader()
            raise

    async def _epoch_reader(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(EPOCH_TOPIC, 0)
        if self._reader is None:
            await ensure_topics(
                self.bootstrap_servers, [Topic(EPOCH_TOPIC, 1, "broker incarnation marker")]
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                enable_auto_commit=False,
                consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
            )
            await consumer.start()
            consumer.assign([tp])
            self._reader = consumer
        return self._reader, tp

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.stop()

    async def check(self) -> bool:
        """True when the broker turned out to be a new incarnation (callbacks have run)."""
        epoch = await self.current_epoch()
        if self.epoch is None or epoch == self.epoch:
            self.epoch = epoch
            return False
        log.warning("the broker lost its state (an in-memory broker restarted); recovering")
        # Subscribing to a topic that does not exist yet would leave a consumer idle until its
        # next metadata refresh (minutes): create them first.
        await ensure_topics(self.bootstrap_servers, self.topics)
        for callback in self._callbacks:
            await callback()
        self.epoch = epoch
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down: try again next round
                log.debug("epoch check failed", error=str(exc))
            await asyncio.sleep(self.interval)


def subscriber_restarter(broker: KafkaBroker) -> EpochCallback:
    """Fresh consumers after a broker lost its state: no stale positions or membership; the
    group's committed offsets are gone, so they start from the earliest message."""

    async def restart() -> None:
        for sub in broker.subscribers:
            await sub.stop()
            await sub.start()

    return restart
