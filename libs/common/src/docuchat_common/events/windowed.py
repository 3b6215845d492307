"""A window of events in flight: for handlers that take seconds (indexing a document).

A batch subscriber handles a batch, then fetches the next one. With slow handlers that wastes
what they share: each batch waits for its slowest event while the rest of the window idles,
and the next batch is fetched and started only then (measured on bench.ingest: the embedding
model sat at half its runs for a third of the run, between and at the end of the worker's
batches). Here an event starts as soon as it is read, while fewer than ``window`` are in
flight, and each is handled exactly as ``EventConsumers.subscribe`` handles one: with its own
claim, retried, held through a database outage, dead-lettered when it keeps failing (a
``SlowHandler`` works outside any transaction and records its outcome with the claim).
Events with the same ordering key (a document's upload and its later delete) are handled one
after another in their order; others overtake each other freely.

Offsets are committed by hand, per partition, up to the first event not yet done: whatever is
in flight when the process stops, dies or loses the partition is delivered again, and the
claims drop what was already done.

The fetch loop never waits for a handler: events beyond the window queue up, and while a
window's worth waits the partitions are paused (and resumed once half of it has started). So
the consumer keeps polling however long its events take: it is never dropped from its group
for exceeding ``max.poll.interval.ms`` (a batch subscriber is, when one batch of large
documents outlasts it), and a stop never waits for a fetch.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from pydantic import TypeAdapter, ValidationError

from docuchat_common.events.envelope import Event, UnknownEvent
from docuchat_common.events.topics import Topic
from docuchat_common.logging import get_logger
from docuchat_common.metrics import CONSUMER_IN_FLIGHT, CONSUMER_LATENCY, CONSUMER_MESSAGES
from docuchat_common.tasks import finish_or_abandon

if TYPE_CHECKING:
    from docuchat_common.events.consumer import AnyHandler, EventConsumers

log = get_logger(__name__)

OFFSET_COMMIT_TIMEOUT = 30.0  # seconds


@dataclass(eq=False, slots=True)
class _InFlight:
    """One record of a partition, from the moment it is read until it is handled."""

    offset: int
    done: bool = False


@dataclass(eq=False, slots=True)
class _Waiting:
    """An event read while the window was full."""

    event: Event[Any]
    record: ConsumerRecord[Any, Any]
    entry: _InFlight
    partition: TopicPartition


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscriber: WindowedSubscriber) -> None:
        self.subscriber = subscriber

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.subscriber.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class WindowedSubscriber:
    """Up to ``window`` events of a topic handled at once (see the module's docstring)."""

    def __init__(
        self,
        consumers: EventConsumers,
        *,
        topic: Topic,
        events: Sequence[type[Event[Any]]],
        group: str,
        consumer: str,
        handler: AnyHandler,
        window: int,
        ordering_key: Callable[[Any], Hashable],
    ) -> None:
        from docuchat_common.events.catalog import event_union

        if window < 1:
            raise ValueError("window must be >= 1")
        self.consumers = consumers
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.window = window
        self.ordering_key = ordering_key
        self.wanted = tuple(events)
        self._adapter: TypeAdapter[Any] = TypeAdapter(event_union(*events))
        self._partitions: dict[TopicPartition, deque[_InFlight]] = {}
        self._waiting: deque[_Waiting] = deque()
        self._last_of_key: dict[Hashable, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0
        self._paused = False
        self._commit_lock: asyncio.Lock | None = None
        self._kafka: AIOKafkaConsumer | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Events started and not yet done (some may wait for an earlier one with their key)."""
        return self._running

    @property
    def waiting(self) -> int:
        """Events read but not started: the window is full."""
        return len(self._waiting)

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions go to another consumer (a rebalance): commit what is done, then forget
        them. Their events in flight finish here (the new owner's claim waits for theirs and
        then drops the event); those waiting are the new owner's to read."""
        await self._commit()
        for partition in partitions:
            self._partitions.pop(partition, None)
        self._waiting = deque(w for w in self._waiting if w.partition not in partitions)
        self._paused = False  # the next assignment starts unpaused
        self._gauge()

    async def take(self, records: Sequence[ConsumerRecord[Any, Any]], kafka: Any) -> None:
        """Queue the records' events, start as many as the window has room for, and return
        at once for more (pausing the partitions while a window's worth waits)."""
        self._kafka = kafka
        if self._commit_lock is None:
            self._commit_lock = asyncio.Lock()
        if self._stopping:
            return  # not committed: delivered again after the restart
        for record in records:
            entry = self._track(record)
            event = await self._decode(record)
            if event is None:
                entry.done = True
                continue
            partition = TopicPartition(record.topic, record.partition)
            self._waiting.append(_Waiting(event, record, entry, partition))
        self._start_waiting()
        if len(self._waiting) >= self.window and not self._paused:
            kafka.pause(*kafka.assignment())
            self._paused = True
        await self._commit()

    def _start_waiting(self) -> None:
        """Start waiting events, oldest first, while the window has room; resume fetching
        once half a window's worth is left."""
        kafka = self._kafka
        while self._waiting and self._running < self.window and not self._stopping:
            waiting = self._waiting.popleft()
            key = self.ordering_key(waiting.event)
            earlier = self._last_of_key.get(key)
            self._running += 1
            task = asyncio.create_task(
                self._handle(waiting.event, waiting.record, waiting.entry, earlier)
            )
            self._last_of_key[key] = task
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._forget, key=key))
        if self._paused and len(self._waiting) <= self.window // 2 and kafka is not None:
            kafka.resume(*kafka.paused())
            self._paused = False
        self._gauge()

    def _gauge(self) -> None:
        labels = (self.consumers.service, self.group)
        CONSUMER_IN_FLIGHT.labels(*labels, "running").set(self._running)
        CONSUMER_IN_FLIGHT.labels(*labels, "waiting").set(len(self._waiting))

    def _track(self, record: ConsumerRecord[Any, Any]) -> _InFlight:
        partition = TopicPartition(record.topic, record.partition)
        entries = self._partitions.setdefault(partition, deque())
        if entries and record.offset <= entries[-1].offset:
            # Read again from its committed offset: the partition went to another consumer and
            # came back. What is still in flight from before commits nothing any more (its
            # events are delivered again; the claims drop what it finishes), and what waited
            # is read again.
            entries = self._partitions[partition] = deque()
            self._waiting = deque(w for w in self._waiting if w.partition != partition)
        entry = _InFlight(record.offset)
        entries.append(entry)
        return entry

    def _forget(self, task: asyncio.Task[None], key: Hashable) -> None:
        self._tasks.discard(task)
        if self._last_of_key.get(key) is task:
            del self._last_of_key[key]

    async def _decode(self, record: ConsumerRecord[Any, Any]) -> Event[Any] | None:
        """The record's event; None for another type or version (skipped) or a malformed
        message (dead-lettered at once)."""
        from docuchat_common.events.consumer import publish_dead_letter

        try:
            event = self._adapter.validate_json(record.value or b"")
        except ValidationError as exc:
            await publish_dead_letter(
                self.consumers.broker,
                record,
                cause=exc,
                attempts=1,
                group=self.group,
                service=self.consumers.service,
            )
            return None
        if isinstance(event, UnknownEvent) or not isinstance(event, self.wanted):
            self._count("ignored")
            return None
        return event

    async def _handle(
        self,
        event: Event[Any],
        record: ConsumerRecord[Any, Any],
        entry: _InFlight,
        earlier: asyncio.Task[None] | None,
    ) -> None:
        from docuchat_common.events.consumer import HandlerFailedError, publish_dead_letter

        started = time.perf_counter()
        try:
            if earlier is not None:
                await asyncio.wait([earlier])  # same key: in order (its outcome is its own)
            try:
                self._count(
                    await self.consumers.handle_one(
                        event,
                        record,
                        group=self.group,
                        consumer=self.consumer,
                        handler=self.handler,
                        wanted=self.wanted,
                    )
                )
            except HandlerFailedError as failed:
                await publish_dead_letter(
                    self.consumers.broker,
                    record,
                    cause=failed.cause,
                    attempts=failed.attempts,
                    group=self.group,
                    service=self.consumers.service,
                )
            entry.done = True
        except Exception:
            # Neither handled nor dead-lettered (the broker refused the dead letter): its
            # offset stays uncommitted, so it comes again after a restart or rebalance.
            log.exception("event neither handled nor dead-lettered", event_id=str(event.id))
        finally:
            self._running -= 1
            self._start_waiting()
            CONSUMER_LATENCY.labels(self.consumers.service, self.topic.name, self.group).observe(
                time.perf_counter() - started
            )
        if entry.done:
            await self._commit()

    async def _commit(self) -> None:
        """Commit, per partition, past every event done before the first one in flight."""
        if self._kafka is None or self._commit_lock is None:
            return
        async with self._commit_lock:
            offsets = {}
            for partition, entries in self._partitions.items():
                last = None
                while entries and entries[0].done:
                    last = entries.popleft().offset
                if last is not None:
                    offsets[partition] = last + 1
            if not offsets:
                return
            try:
                async with asyncio.timeout(OFFSET_COMMIT_TIMEOUT):
                    await self._kafka.commit(offsets)
            except Exception:
                # Lost the partition meanwhile (or the broker is away): its events come again
                # to whoever reads it next, and the claims drop what was done.
                log.info("offsets not committed; the events will be delivered again", exc_info=True)

    async def drain(self, grace: float) -> None:
        """At stop, before the Kafka consumer closes: start nothing more, give what is in
        flight ``grace`` seconds to finish and commit it; what is still going then is
        abandoned, and it and whatever waited are delivered again (uncommitted)."""
        self._stopping = True
        self._waiting.clear()
        self._gauge()
        if self._kafka is not None:
            self._kafka.pause(*self._kafka.assignment())  # nothing more to read meanwhile
        await finish_or_abandon(self._tasks, grace, what="event", group=self.group)
        await self._commit()

    def _count(self, outcome: str) -> None:
        CONSUMER_MESSAGES.labels(self.consumers.service, self.topic.name, self.group, outcome).inc()
