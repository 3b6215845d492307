"""The service's Kafka broker (FastStream over aiokafka), with tracing and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware

from docuchat_common.events.consumer import dead_letter_middleware
from docuchat_common.logging import get_logger
from docuchat_common.metrics import CONSUMER_LAG, registry
from docuchat_common.settings import ServiceSettings

log = get_logger(__name__)


def create_broker(settings: ServiceSettings, service: str) -> KafkaBroker:
    extra: dict[str, Any] = {}
    if settings.kafka_enable_idempotence:
        extra["enable_idempotence"] = True
        extra["acks"] = "all"
    dead_letters, bind_dead_letters = dead_letter_middleware(service)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"docuchat-{service}{settings.kafka_client_id_suffix}",
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        middlewares=[
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=registry, app_name=service),
            dead_letters,
        ],
        logger=get_logger(f"docuchat.{service}.kafka"),
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
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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


class BrokerEpochWatchdog:
    """Re-reads subscribed partitions from the start when the broker has lost its state.

    The embedded broker (tansu, memory storage) forgets every topic, message and committed
    offset when it restarts, while our consumers keep their in-memory positions and would skip
    the first messages of the re-created partitions. The first message of a one-partition
    ``docuchat.broker-epoch`` topic names the broker's incarnation; when it changes (or the topic
    is gone) every subscriber seeks to the beginning. Consumers are idempotent, so re-reading
    is safe. Off for a durable Kafka (``kafka_ephemeral_broker``), where this never happens.
    """

    def __init__(self, broker: KafkaBroker, bootstrap_servers: str, interval: float = 1.0) -> None:
        self.broker = broker
        self.bootstrap_servers = bootstrap_servers
        self.interval = interval
        self.epoch: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broker-epoch-watchdog")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def current_epoch(self) -> bytes:
        import uuid

        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from docuchat_common.events.topics import Topic, ensure_topics

        created = await ensure_topics(
            self.bootstrap_servers, [Topic(EPOCH_TOPIC, 1, "broker incarnation marker")]
        )
        if created:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers)
            await producer.start()
            try:
                await producer.send_and_wait(EPOCH_TOPIC, uuid.uuid4().bytes)
            finally:
                await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(EPOCH_TOPIC, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            record = await asyncio.wait_for(consumer.getone(), 10)
            value: bytes = record.value
            return value
        finally:
            await consumer.stop()

    async def check(self) -> bool:
        """Returns True when the broker turned out to be a new incarnation (and we rewound)."""
        epoch = await self.current_epoch()
        if self.epoch is None or epoch == self.epoch:
            self.epoch = epoch
            return False
        self.epoch = epoch
        log.warning("broker lost its state (restarted in-memory broker); re-reading topics")
        for sub in self.broker.subscribers:
            consumer = getattr(sub, "consumer", None)
            if consumer is not None and consumer.assignment():
                await consumer.seek_to_beginning(*consumer.assignment())
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
