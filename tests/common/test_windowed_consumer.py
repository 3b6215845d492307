"""The windowed consumer on the real broker and PostgreSQL: slow events do not hold up the
ones behind them, a key's events keep their order, the window bounds the work in flight, and
offsets never pass an event that is not done (so a stop loses nothing and repeats nothing)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.db import Database
from docuchat_common.events.bus import create_broker
from docuchat_common.events.consumer import DLQ_ATTEMPTS_HEADER, EventConsumers
from docuchat_common.events.envelope import Event, EventData
from docuchat_common.events.topics import Topic, ensure_topics
from docuchat_common.events.windowed import WindowedSubscriber
from docuchat_common.settings import ServiceSettings
from docuchat_usage.models import processed_events as processed_table
from tests.helpers import eventually, read_topic


class StepData(EventData):
    n: int
    key: str


class StepTaken(Event[StepData]):
    type: Literal["step.taken"] = "step.taken"
    version: Literal[1] = 1


@dataclass
class Window:
    """A windowed consumer whose handler waits, for the events told to, until released."""

    bootstrap: str
    database: Database
    topic: Topic
    consumers: EventConsumers
    group: str
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0

    def hold(self, *numbers: int) -> None:
        for n in numbers:
            self.gates[n] = asyncio.Event()

    def release(self, n: int) -> None:
        self.gates[n].set()

    async def handle(self, event: Any, session: AsyncSession) -> None:
        n = event.data.n
        self.started.append(n)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            gate = self.gates.get(n)
            if gate is not None:
                await gate.wait()
            # A plain insert: only the claim keeps a redelivery from doubling it.
            await session.execute(
                text("INSERT INTO step_effects (n, event_id) VALUES (:n, :id)"),
                {"n": n, "id": event.id},
            )
        finally:
            self.in_flight -= 1
        self.finished.append(n)

    async def send(self, *steps: tuple[int, str] | tuple[int, str, int] | bytes) -> None:
        """Events (number, key[, partition]) or raw bytes, in this order."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for step in steps:
                if isinstance(step, bytes):
                    await producer.send_and_wait(self.topic.name, step, key=b"k")
                    continue
                n, key = step[0], step[1]
                event = StepTaken(
                    tenant_id=uuid.uuid4(), source="test", data=StepData(n=n, key=key)
                )
                body = json.dumps(event.to_json_dict()).encode()
                partition = step[2] if len(step) == 3 else None
                await producer.send_and_wait(
                    self.topic.name, body, key=key.encode(), partition=partition
                )
        finally:
            await producer.stop()

    async def effects(self) -> list[tuple[int, int]]:
        async with self.database.transaction() as session:
            rows = await session.execute(
                text("SELECT n, count(*) FROM step_effects GROUP BY n ORDER BY n")
            )
            return [(r[0], r[1]) for r in rows]

    async def committed(self, partition: int = 0) -> int | None:
        """The group's committed offset on one of the topic's partitions."""
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group)
        await reader.start()
        try:
            offset: int | None = await reader.committed(TopicPartition(self.topic.name, partition))
            return offset
        finally:
            await reader.stop()


WindowFactory = Callable[..., Awaitable[Window]]


@pytest.fixture
async def make_window(
    infra: Any, databases: dict[str, str], group_prefix: str
) -> AsyncIterator[WindowFactory]:
    bootstrap = infra.bootstrap_servers
    topics: list[Topic] = []
    database = Database(databases["usage"], pool_size=8)
    async with database.transaction() as session:
        await session.execute(
            text("CREATE TABLE step_effects (n int NOT NULL, event_id uuid NOT NULL)")
        )
    started: list[EventConsumers] = []

    async def make(window: int, *, partitions: int = 1) -> Window:
        """A consumer of the test's topic (created by the first call: one partition unless
        told, so that the order of offsets is the order of sending)."""
        if not topics:
            topics.append(Topic(f"test.window.{uuid.uuid4().hex[:8]}", partitions, "probe"))
            await ensure_topics(bootstrap, [topics[0], topics[0].dlq])
        topic = topics[0]
        settings = ServiceSettings(
            environment="test",
            database_url=databases["usage"],
            kafka_bootstrap_servers=bootstrap,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
        consumers = EventConsumers(
            broker=create_broker(settings, "test"),
            database=database,
            processed_table=processed_table,
            service="test",
            session_timeout_ms=2000,
            heartbeat_interval_ms=300,
            retry_wait_max=0.05,
            group_prefix=group_prefix,
        )
        probe = Window(bootstrap, database, topic, consumers, group_prefix + "steps")
        consumers.subscribe_windowed(
            topic,
            [StepTaken],
            group="steps",
            handler=probe.handle,
            window=window,
            ordering_key=lambda event: event.data.key,
        )
        await consumers.broker.start()
        started.append(consumers)
        return probe

    yield make
    for consumers in started:
        await consumers.stop(0.1)
    await database.dispose()


async def test_a_slow_event_does_not_hold_up_the_events_behind_it(
    make_window: WindowFactory,
) -> None:
    window = await make_window(4)
    window.hold(1)
    await window.send((1, "a"), (2, "b"), (3, "c"), (4, "d"))

    async def behind_done() -> list[tuple[int, int]]:
        effects = await window.effects()
        return effects if len(effects) == 3 else []

    assert await eventually(behind_done, what="the events behind the slow one") == [
        (2, 1),
        (3, 1),
        (4, 1),
    ]
    # (The window's tasks run side by side: 1 may reach its handler after the others.)
    await eventually(lambda: _has_started(window, 1), what="the slow event in its handler")
    assert 1 not in window.finished
    # Nothing is committed past an event still in flight: a crash now would deliver it again.
    assert await window.committed() is None

    window.release(1)
    await eventually(lambda: _effects_count(window, 4), what="the slow event")
    assert await window.effects() == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert await eventually(lambda: _committed_is(window, 4), what="offsets past all four")


async def test_events_with_one_key_keep_their_order(make_window: WindowFactory) -> None:
    window = await make_window(4)
    window.hold(1)
    await window.send((1, "doc-a"), (2, "doc-a"), (3, "doc-b"))
    await eventually(lambda: _effects_count(window, 1), what="the other key's event")
    # doc-a's second event was read before doc-b's, yet waits for doc-a's first.
    assert window.finished == [3]
    assert 2 not in window.started

    window.release(1)
    await eventually(lambda: _effects_count(window, 3), what="doc-a's events")
    assert window.finished == [3, 1, 2]


async def test_the_window_bounds_the_events_in_flight(make_window: WindowFactory) -> None:
    window = await make_window(2)
    window.hold(1, 2, 3, 4, 5)
    await window.send(*((n, f"key-{n}") for n in range(1, 6)))
    subscriber = window.consumers.windows[0]
    # The fetch loop does not wait for the handlers: more are read meanwhile (so the consumer
    # keeps polling however long its events take), up to a window's worth, then it pauses.
    await eventually(lambda: _waiting_is(subscriber, 2), what="two events read and waiting")
    assert subscriber.in_flight == 2
    # What an operator sees of it.
    assert _gauge(window, "running") == 2
    assert _gauge(window, "waiting") == 2
    for n in range(1, 6):
        await eventually(lambda n=n: _has_started(window, n), what=f"event {n} started")
        window.release(n)
    await eventually(lambda: _effects_count(window, 5), what="all five")
    assert window.peak == 2  # side by side, never more than the window


async def test_a_stop_delivers_again_only_what_was_in_flight(make_window: WindowFactory) -> None:
    first = await make_window(4)
    first.hold(1)
    await first.send((1, "a"), (2, "b"), (3, "c"))
    await eventually(lambda: _effects_count(first, 2), what="the events behind the held one")
    # The stop gives event 1 a moment, then abandons it, uncommitted.
    await first.consumers.stop(0.05)
    assert 1 not in first.finished

    second = await make_window(4)
    await eventually(lambda: _effects_count(second, 3), what="the abandoned event, again")
    # 2 and 3 came again too (the offsets could not pass 1) and their claims dropped them.
    assert await second.effects() == [(1, 1), (2, 1), (3, 1)]
    assert second.finished == [1]
    assert await eventually(lambda: _committed_is(second, 3), what="offsets past all three")


async def test_a_malformed_message_is_dead_lettered_and_passed(
    make_window: WindowFactory, infra: Any
) -> None:
    window = await make_window(4)
    await window.send(b"{not json", (1, "a"))
    await eventually(lambda: _effects_count(window, 1), what="the message after the bad one")
    dead = await read_topic(infra.bootstrap_servers, window.topic.dlq.name, 1)
    assert [r.value for r in dead] == [b"{not json"]
    assert dict(dead[0].headers)[DLQ_ATTEMPTS_HEADER] == b"1"
    assert await eventually(lambda: _committed_is(window, 2), what="offsets past both")


async def test_a_rebalance_mid_window_handles_every_event_once(make_window: WindowFactory) -> None:
    """A second worker joins while the first has events in flight on both partitions (KEDA
    adding a replica): the first commits what is done and lets the partitions go; the new
    owner reads the rest again, and the claims drop what the first finishes."""
    first = await make_window(4, partitions=2)
    first.hold(1, 2)
    await first.send(*((n, f"key-{n}", n % 2) for n in range(1, 9)))
    await eventually(lambda: _effects_count(first, 6), what="all but the two held events")

    second = await make_window(4)
    await eventually(lambda: _has_joined(second), what="the second consumer to get a partition")
    first.release(1)
    first.release(2)
    await eventually(lambda: _effects_count(first, 8), what="the two held events")
    assert await first.effects() == [(n, 1) for n in range(1, 9)]
    assert await eventually(
        lambda: _committed_are(first, {0: 4, 1: 4}), what="both partitions committed to the end"
    )


async def _has_joined(window: Window) -> bool:
    kafka = window.consumers.windows[0]._kafka
    return kafka is not None and bool(kafka.assignment())


async def _committed_are(window: Window, offsets: dict[int, int]) -> bool:
    return all([await window.committed(p) == offset for p, offset in offsets.items()])


async def _effects_count(window: Window, n: int) -> bool:
    return len(await window.effects()) >= n


def _gauge(window: Window, state: str) -> float | None:
    labels = {"service": "test", "group": window.group, "state": state}
    return REGISTRY.get_sample_value("docuchat_consumer_in_flight", labels)


async def _waiting_is(subscriber: WindowedSubscriber, n: int) -> bool:
    return subscriber.waiting == n


async def _has_started(window: Window, n: int) -> bool:
    return n in window.started


async def _committed_is(window: Window, offset: int) -> bool:
    return await window.committed() == offset
