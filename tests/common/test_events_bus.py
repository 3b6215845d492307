"""The event bus on the real broker and PostgreSQL: outbox → relay → Kafka → idempotent
consumer, dead letters, and a broker restart with unpublished events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.context import bound_context
from docuchat_common.db import Database
from docuchat_common.events.bus import BrokerEpochWatchdog, create_broker, subscriber_restarter
from docuchat_common.events.consumer import (
    DLQ_ATTEMPTS_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_ORIGIN_HEADER,
    LOST_CONNECTION_ROUNDS,
    EventConsumers,
)
from docuchat_common.events.envelope import Event, EventData
from docuchat_common.events.outbox import RELAY_APPLICATION_NAME, Outbox, OutboxRelay
from docuchat_common.events.topics import Topic, ensure_topics
from docuchat_common.settings import ServiceSettings
from docuchat_usage.models import outbox as outbox_table
from docuchat_usage.models import processed_events as processed_table
from tests.helpers import allow_connections, eventually, read_topic


class ProbeData(EventData):
    n: int
    poison: bool = False


def probe_event_class(topic: Topic) -> type[Event[ProbeData]]:
    class ProbeHappened(Event[ProbeData]):
        type: Literal["probe.happened"] = "probe.happened"
        version: Literal[1] = 1

    ProbeHappened.topic = topic
    return ProbeHappened


@dataclass
class Bus:
    """One 'service' worth of bus: its database, broker, outbox, relay and a probe consumer."""

    database: Database
    topic: Topic
    event: type[Event[ProbeData]]
    consumers: EventConsumers
    relay: OutboxRelay
    outbox: Outbox
    handled: list[int] = field(default_factory=list)
    broken: set[int] = field(default_factory=set)  # numbers the handler fails on, for now
    # numbers whose handling terminates its own database connection, and how many more times
    lose_connection: dict[int, int] = field(default_factory=dict)
    watchdog: BrokerEpochWatchdog | None = None

    async def close(self) -> None:
        if self.watchdog:
            await self.watchdog.stop()
        await self.relay.stop()
        await self.consumers.broker.stop()
        await self.database.dispose()

    async def emit(
        self, *numbers: int, poison: bool = False, correlation_id: str | None = None
    ) -> list[uuid.UUID]:
        events = [
            self.event(tenant_id=uuid.uuid4(), source="test", data=ProbeData(n=n, poison=poison))
            for n in numbers
        ]
        with bound_context(correlation_id=correlation_id):
            events = [e.model_copy(update={"correlation_id": correlation_id}) for e in events]
            async with self.database.transaction() as session:
                await self.outbox.add(session, *events)
        self.relay.wake()
        return [e.id for e in events]

    async def effects(self) -> list[tuple[int, int]]:
        async with self.database.transaction() as session:
            rows = await session.execute(
                text("SELECT n, count(*) FROM probe_effects GROUP BY n ORDER BY n")
            )
            return [(r[0], r[1]) for r in rows]

    async def pending(self) -> int:
        async with self.database.transaction() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(outbox_table)
                .where(outbox_table.c.published_at.is_(None))
            )
            return int(count or 0)


async def _bus(
    bootstrap: str, database_url: str, group_prefix: str, *, max_attempts: int = 3
) -> Bus:
    settings = ServiceSettings(
        environment="test",
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
    )
    topic = Topic(f"test.probe.{uuid.uuid4().hex[:8]}", 2, "probe")
    await ensure_topics(bootstrap, [topic, topic.dlq])
    database = Database(database_url, pool_size=4)
    async with database.transaction() as session:
        await session.execute(
            text("CREATE TABLE probe_effects (n int NOT NULL, event_id uuid NOT NULL)")
        )
    broker = create_broker(settings, "test")
    consumers = EventConsumers(
        broker=broker,
        database=database,
        processed_table=processed_table,
        service="test",
        max_attempts=max_attempts,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        retry_wait_max=0.05,
        group_prefix=group_prefix,
    )
    event_cls = probe_event_class(topic)
    bus = Bus(
        database=database,
        topic=topic,
        event=event_cls,
        consumers=consumers,
        relay=OutboxRelay(
            service="test",
            database=database,
            table=outbox_table,
            broker=broker,
            bootstrap_servers=bootstrap,
            topics=[topic, topic.dlq],
            poll_interval=0.2,
            max_backoff=0.5,
        ),
        outbox=Outbox(outbox_table),
    )

    async def handle(event: Any, session: AsyncSession) -> None:
        if event.data.poison:
            raise ValueError(f"poison message {event.data.n}")
        if event.data.n in bus.broken:
            raise RuntimeError(f"handler bug on {event.data.n}")
        if bus.lose_connection.get(event.data.n, 0) > 0:
            bus.lose_connection[event.data.n] -= 1
            # The backend goes away (a failover, an administrator): the database stays up.
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        # A plain insert: only the processed-events claim keeps a redelivery from doubling it.
        await session.execute(
            text("INSERT INTO probe_effects (n, event_id) VALUES (:n, :id)"),
            {"n": event.data.n, "id": event.id},
        )
        bus.handled.append(event.data.n)

    consumers.subscribe(topic, [event_cls], group="probe", handler=handle)
    await broker.start()
    await bus.relay.start()
    # What a runtime does against an ephemeral broker (the dev stack's tansu).
    bus.watchdog = BrokerEpochWatchdog(bootstrap, [topic, topic.dlq], interval=0.3)
    bus.watchdog.on_new_epoch(bus.relay.replay)
    bus.watchdog.on_new_epoch(subscriber_restarter(broker))
    await bus.watchdog.check()
    bus.watchdog.start()
    return bus


@pytest.fixture
async def bus(infra: Any, databases: dict[str, str], group_prefix: str) -> AsyncIterator[Bus]:
    bus = await _bus(infra.bootstrap_servers, databases["usage"], group_prefix)
    yield bus
    await bus.close()


async def test_outbox_events_reach_the_consumer_once_with_correlation_id(
    bus: Bus, infra: Any
) -> None:
    ids = await bus.emit(1, 2, 3, correlation_id="corr-42")

    async def all_effects() -> list[tuple[int, int]]:
        effects = await bus.effects()
        return effects if len(effects) == 3 else []

    assert await eventually(all_effects, what="3 effects") == [(1, 1), (2, 1), (3, 1)]
    assert await bus.pending() == 0
    records = await read_topic(infra.bootstrap_servers, bus.topic.name, 3)
    envelopes = [json.loads(r.value) for r in records]
    assert {uuid.UUID(e["id"]) for e in envelopes} == set(ids)
    assert {e["correlation_id"] for e in envelopes} == {"corr-42"}
    assert all(dict(r.headers)["correlation_id"] == b"corr-42" for r in records)
    # Message key = tenant id: per-tenant ordering.
    assert all(r.key.decode() == e["tenant_id"] for r, e in zip(records, envelopes, strict=True))


async def test_redelivered_events_have_no_second_effect(bus: Bus) -> None:
    await bus.emit(7, 8)
    await eventually(lambda: _count(bus, 2), what="first delivery")
    # The relay crashed after publishing but before marking: it publishes the rows again.
    async with bus.database.transaction() as session:
        await session.execute(update(outbox_table).values(published_at=None))
    bus.relay.wake()
    await eventually(lambda: _no_pending(bus), what="republish")
    await bus.emit(9)  # a later event proves the consumer has read past the duplicates
    await eventually(lambda: _count(bus, 3), what="the later event")
    assert await bus.effects() == [(7, 1), (8, 1), (9, 1)]
    async with bus.database.transaction() as session:
        claimed = await session.scalar(select(func.count()).select_from(processed_table))
    assert claimed == 3


async def _count(bus: Bus, n: int) -> bool:
    return len(await bus.effects()) >= n


async def _no_pending(bus: Bus) -> bool:
    return await bus.pending() == 0


async def test_a_failing_handler_dead_letters_and_the_consumer_goes_on(
    bus: Bus, infra: Any
) -> None:
    await bus.emit(100, poison=True)
    await bus.emit(101)
    await eventually(lambda: _count(bus, 1), what="the message after the poison one")
    assert await bus.effects() == [(101, 1)]

    dead = await read_topic(infra.bootstrap_servers, bus.topic.dlq.name, 1)
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers[DLQ_ATTEMPTS_HEADER] == "3"
    assert "poison message 100" in headers[DLQ_ERROR_HEADER]
    assert headers[DLQ_ORIGIN_HEADER].startswith(bus.topic.name + "/")
    assert json.loads(dead[0].value)["data"]["n"] == 100  # the original body, untouched


async def test_an_unparseable_message_goes_to_the_dlq_at_once(bus: Bus, infra: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(bus.topic.name, b"{not json", key=b"k")
        await producer.send_and_wait(
            bus.topic.name, json.dumps({"type": "probe.happened"}).encode(), key=b"k"
        )
    finally:
        await producer.stop()
    await bus.emit(5)
    await eventually(lambda: _count(bus, 1), what="the good message after two bad ones")
    dead = await read_topic(infra.bootstrap_servers, bus.topic.dlq.name, 2)
    assert sorted(r.value for r in dead) == sorted([b"{not json", b'{"type": "probe.happened"}'])
    assert all(dict(r.headers)[DLQ_ATTEMPTS_HEADER] == b"1" for r in dead)


async def test_broker_restart_with_unpublished_outbox_delivers_everything_once(
    databases: dict[str, str], group_prefix: str, tmp_path: Path
) -> None:
    from docuchat.devstack import TansuBroker

    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    bus = await _bus(broker.bootstrap_servers, databases["usage"], group_prefix)
    try:
        await bus.emit(1)
        await eventually(lambda: _count(bus, 1), what="delivery before the restart")

        broker.stop()
        await bus.emit(2, 3, 4)
        # The relay cannot publish: the events wait in the outbox, committed.
        assert await bus.pending() == 3

        broker.start()  # same port; the in-memory broker has lost its topics and offsets
        await eventually(lambda: _count(bus, 4), timeout=60, what="delivery after the restart")
        assert await bus.pending() == 0
        assert await bus.effects() == [(1, 1), (2, 1), (3, 1), (4, 1)]
    finally:
        await bus.close()
        broker.stop()


async def dead_letters(bootstrap: str, topic: Topic) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic.dlq.name, 0)
        return int((await consumer.end_offsets([partition]))[partition])
    finally:
        await consumer.stop()


async def test_a_database_outage_holds_the_message_instead_of_dead_lettering_it(
    bus: Bus, infra: Any, databases: dict[str, str], group_prefix: str
) -> None:
    from prometheus_client import REGISTRY

    await bus.emit(1)
    await eventually(lambda: _count(bus, 1), what="delivery before the outage")
    labels = {"service": "test", "topic": bus.topic.name, "group": group_prefix + "probe"}

    def failures() -> float:
        return REGISTRY.get_sample_value("docuchat_consumer_errors_total", labels) or 0.0

    before = failures()
    url = databases["usage"]
    await allow_connections(url, False)
    try:
        # The relay cannot read the outbox now: the event comes straight from a producer.
        event = bus.event(tenant_id=uuid.uuid4(), source="test", data=ProbeData(n=2))
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                bus.topic.name, event.model_dump_json().encode(), key=event.key
            )
        finally:
            await producer.stop()

        async def held() -> bool:  # every attempt failed, and the consumer holds the message
            holding = REGISTRY.get_sample_value(
                "docuchat_consumer_held_messages",
                {"service": "test", "group": labels["group"]},
            )
            return failures() >= before + 3 and holding == 1

        await eventually(held, what="the consumer to hold the message")
    finally:
        await allow_connections(url, True)

    await eventually(lambda: _count(bus, 2), timeout=60, what="the held message handled")
    assert await bus.effects() == [(1, 1), (2, 1)]
    assert await dead_letters(infra.bootstrap_servers, bus.topic) == 0


async def test_a_lost_connection_is_handled_again_not_dead_lettered(bus: Bus, infra: Any) -> None:
    """The connection breaks on every attempt of a first round (3) and once more; the database
    itself answers each time the consumer checks (it was back before the check: the moment
    that used to dead-letter the message). A message that breaks its connection every time
    still ends in the DLQ, after a bounded number of rounds."""
    bus.lose_connection[200] = 4
    bus.lose_connection[201] = 1_000
    await bus.emit(200)
    await bus.emit(201)
    await bus.emit(202)
    await eventually(lambda: _count(bus, 2), what="the messages around the poison one")
    assert await bus.effects() == [(200, 1), (202, 1)]
    dead = await read_topic(infra.bootstrap_servers, bus.topic.dlq.name, 1)
    assert [json.loads(r.value)["data"]["n"] for r in dead] == [201]
    # 3 attempts in each of 1 + LOST_CONNECTION_ROUNDS rounds
    assert bus.lose_connection[201] == 1_000 - 3 * (1 + LOST_CONNECTION_ROUNDS)


async def test_dead_letters_are_listed_and_replayed_once_their_cause_is_fixed(
    bus: Bus, infra: Any
) -> None:
    from docuchat_common.events.dead_letters import inspect_dead_letters, replay_dead_letters

    bootstrap = infra.bootstrap_servers
    bus.broken = {200, 201}
    await bus.emit(200, 201)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:  # and one that is no event at all
        await producer.send_and_wait(bus.topic.name, b"{not json", key=b"k")
    finally:
        await producer.stop()
    await bus.emit(202)
    await eventually(lambda: _count(bus, 1), what="the message after the failing ones")
    await read_topic(bootstrap, bus.topic.dlq.name, 3)

    shown = await inspect_dead_letters(bootstrap, bus.topic.name)
    assert shown.letters == 3
    assert sum(n for (_, kind), n in shown.causes.items() if kind == "RuntimeError") == 2
    examples = {kind: text for (_, kind), text in shown.examples.items()}
    assert "handler bug on 20" in examples["RuntimeError"]

    dry = await replay_dead_letters(bootstrap, bus.topic.name, group="replay-a", dry_run=True)
    assert (dry.replayed, len(dry.skipped)) == (2, 1)
    assert await bus.effects() == [(202, 1)]  # a dry run publishes nothing

    bus.broken.clear()  # the fix is deployed
    report = await replay_dead_letters(bootstrap, bus.topic.name, group="replay-a")
    assert (report.replayed, len(report.skipped)) == (2, 1)
    assert report.skipped[0].value == b"{not json"
    await eventually(lambda: _count(bus, 3), what="the replayed messages handled")
    assert await bus.effects() == [(200, 1), (201, 1), (202, 1)]

    again = await replay_dead_letters(bootstrap, bus.topic.name, group="replay-a")
    assert (again.letters, again.replayed) == (0, 0)  # each letter is replayed once


class GatedRelay(OutboxRelay):
    """A relay that holds each publish at a gate: a test commits an event while it publishes."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.publishing = asyncio.Event()
        self.gate = asyncio.Event()

    async def _publish(
        self, topic: str, key: bytes | None, payload: dict[str, Any], headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        self.publishing.set()
        await self.gate.wait()
        return await super()._publish(topic, key, payload, headers)


class RefusingRelay(OutboxRelay):
    """A relay whose broker refuses the event ``n == 2`` once: the one after it in the same
    batch is never handed over either."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.refused = 0

    async def _publish(
        self, topic: str, key: bytes | None, payload: dict[str, Any], headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        if payload["data"]["n"] == 2 and not self.refused:
            self.refused += 1
            raise ConnectionError("broker refused the event")
        return await super()._publish(topic, key, payload, headers)


@dataclass
class LoneRelay:
    """A relay of its own (no consumer) whose polls are too rare to matter within a test: only
    the insert trigger's NOTIFY wakes it in time."""

    relay: OutboxRelay
    database: Database
    topic: Topic

    async def commit(self, n: int) -> uuid.UUID:
        """An event written as a service writes one: no wake-up call, only the NOTIFY."""
        written = probe_event_class(self.topic)(
            tenant_id=uuid.uuid4(), source="test", data=ProbeData(n=n)
        )
        async with self.database.transaction() as session:
            await Outbox(outbox_table).add(session, written)
        return written.id


@asynccontextmanager
async def lone_relay(
    infra: Any, database_url: str, relay_class: type[OutboxRelay] = OutboxRelay
) -> AsyncIterator[LoneRelay]:
    bootstrap = infra.bootstrap_servers
    topic = Topic(f"test.probe.{uuid.uuid4().hex[:8]}", 1, "probe")
    await ensure_topics(bootstrap, [topic])
    settings = ServiceSettings(
        environment="test", database_url=database_url, kafka_bootstrap_servers=bootstrap
    )
    database = Database(database_url, pool_size=2)
    broker = create_broker(settings, "test")
    relay = relay_class(
        service="test",
        database=database,
        table=outbox_table,
        broker=broker,
        bootstrap_servers=bootstrap,
        topics=[topic],
        listening_poll_interval=600,
    )
    await broker.start()
    await relay.start()
    try:
        yield LoneRelay(relay, database, topic)
    finally:
        await relay.stop()
        await broker.stop()
        await database.dispose()


async def test_an_event_committed_while_the_relay_publishes_goes_out_without_waiting_for_a_poll(
    infra: Any, databases: dict[str, str]
) -> None:
    async with lone_relay(infra, databases["usage"], GatedRelay) as lone:
        relay = lone.relay
        assert isinstance(relay, GatedRelay) and relay.listening
        await lone.commit(1)
        async with asyncio.timeout(10):
            await relay.publishing.wait()  # the relay is inside its batch: event 1 only
        await lone.commit(2)
        relay.gate.set()
        records = await read_topic(infra.bootstrap_servers, lone.topic.name, 2)
        assert sorted(json.loads(r.value)["data"]["n"] for r in records) == [1, 2]


async def test_a_relay_whose_listening_connection_is_lost_listens_again(
    infra: Any, databases: dict[str, str]
) -> None:
    async with lone_relay(infra, databases["usage"]) as lone:
        relay, connection = lone.relay, lone.relay._connection
        async with lone.database.transaction() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE :name"
                ),
                {"name": f"{RELAY_APPLICATION_NAME}-%"},
            )

        async def listening_anew() -> bool:
            return relay.listening and relay._connection is not connection

        await eventually(listening_anew, timeout=10, what="a new LISTEN connection")
        written = await lone.commit(5)
        (record,) = await read_topic(infra.bootstrap_servers, lone.topic.name, 1)
        assert json.loads(record.value)["id"] == str(written)


async def test_events_the_broker_refuses_stay_in_the_outbox_and_go_out_in_order_next_time(
    infra: Any, databases: dict[str, str]
) -> None:
    async with lone_relay(infra, databases["usage"], RefusingRelay) as lone:
        relay = lone.relay
        assert isinstance(relay, RefusingRelay)
        # Three events in one transaction: one look reads all three as one batch.
        written = [
            probe_event_class(lone.topic)(
                tenant_id=uuid.uuid4(), source="test", data=ProbeData(n=n)
            )
            for n in (1, 2, 3)
        ]
        async with lone.database.transaction() as session:
            await Outbox(outbox_table).add(session, *written)
        records = await read_topic(infra.bootstrap_servers, lone.topic.name, 3)
        assert relay.refused == 1
        assert [json.loads(r.value)["data"]["n"] for r in records] == [1, 2, 3]
        async with lone.database.transaction() as session:
            attempts = dict(
                (
                    await session.execute(
                        select(outbox_table.c.id, outbox_table.c.attempts).where(
                            outbox_table.c.id.in_([e.id for e in written]),
                            outbox_table.c.published_at.is_not(None),
                        )
                    )
                ).all()
            )
        # Each went out once, and the refusal cost the unsent ones no attempt.
        assert attempts == {e.id: 1 for e in written}
