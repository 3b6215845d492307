"""A window of events in flight: for handlers that take seconds (indexing a document).

A batch subscriber handles a batch, then fetches the next one. With slow handlers that wastes
what they share: each batch waits for its slowest event while the rest of the window idles,
and the next batch is fetched and started only then (measured on bench.ingest: the embedding
model sat at half its runs for a third of the run, between and at the end of the worker's
batches). Here an event starts as soon as it is read, while fewer than ``window`` are in
flight, and each is handled exactly as ``EventConsumers.subscribe`` handles one: in its own
transaction with its claim, retried, held through a database outage, dead-lettered when it
keeps failing. Events with the same ordering key (a document's upload and its later delete)
are handled one after another in their order; others overtake each other freely.

Offsets are committed by hand, per partition, up to the first event not yet done: whatever is
in flight when the process stops, dies or loses the partition is delivered again, and the
claims drop what was already done.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pydantic import SkipValidation, TypeAdapter, ValidationError

from docuchat_common.events.envelope import Event, UnknownEvent
from docuchat_common.events.records import parse_records, raw_values
from docuchat_common.events.topics import Topic
from docuchat_common.logging import get_logger
from docuchat_common.metrics import CONSUMER_LATENCY, CONSUMER_MESSAGES
from docuchat_common.tasks import stop_task

if TYPE_CHECKING:
    from docuchat_common.events.consumer import EventConsumers, EventHandler

log = get_logger(__name__)

OFFSET_COMMIT_TIMEOUT = 30.0  # seconds


@dataclass(eq=False, slots=True)
class _InFlight:
    """One record of a partition, from the moment it is read until it is handled."""

    offset: int
    done: bool = False


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
        handler: EventHandler,
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
        self.body_type = event_union(*events)
        self._adapter: TypeAdapter[Any] = TypeAdapter(self.body_type)
        self._partitions: dict[TopicPartition, deque[_InFlight]] = {}
        self._last_of_key: dict[Hashable, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._kafka: AIOKafkaConsumer | None = None
        self._stopping = False
        self._drained = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Events being handled (or waiting for an earlier one with their key)."""
        return len(self._tasks)

    def register(self, description: str | None) -> None:
        async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
            await self.take(message.raw_message, message.consumer)

        # AsyncAPI documents the events; FastStream passes the bytes through unvalidated.
        handle.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "bodies",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=SkipValidation[list[self.body_type]],  # type: ignore[name-defined]
                ),
                inspect.Parameter(
                    "message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=KafkaMessage
                ),
            ],
            return_annotation=None,
        )
        handle.__name__ = f"{self.group}__{self.topic.name}".replace(".", "_").replace("-", "_")
        handle.__doc__ = description
        self.consumers.broker.subscriber(
            self.topic.name,
            group_id=self.group,
            auto_offset_reset="earliest",
            # Committed by hand, per partition, up to the first event still in flight.
            ack_policy=AckPolicy.MANUAL,
            session_timeout_ms=self.consumers.session_timeout_ms,
            heartbeat_interval_ms=self.consumers.heartbeat_interval_ms,
            title=f"{self.group}:{self.topic.name}",
            description=description,
            batch=True,
            max_records=self.window,
            batch_timeout_ms=20,
            parser=parse_records,
            decoder=raw_values,
        )(handle)

    async def take(self, records: Sequence[ConsumerRecord[Any, Any]], kafka: Any) -> None:
        """Start each record's event as soon as the window has room (until then the fetch
        loop waits here: that is the backpressure), then return for more."""
        self._kafka = kafka
        if self._slots is None or self._commit_lock is None:
            self._slots = asyncio.Semaphore(self.window)
            self._commit_lock = asyncio.Lock()
        for record in records:
            if self._stopping:
                break  # not committed: delivered again after the restart
            entry = self._track(record)
            event = await self._decode(record)
            if event is None:
                entry.done = True
                continue
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                break
            key = self.ordering_key(event)
            earlier = self._last_of_key.get(key)
            task = asyncio.create_task(self._handle(event, record, entry, earlier))
            self._last_of_key[key] = task
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._forget, key=key))
        if self._stopping:
            # FastStream closes the consumer once this call returns: not before the drain has
            # committed what finished.
            await self._drained.wait()
            return
        await self._commit()

    def _track(self, record: ConsumerRecord[Any, Any]) -> _InFlight:
        partition = TopicPartition(record.topic, record.partition)
        entries = self._partitions.setdefault(partition, deque())
        if entries and record.offset <= entries[-1].offset:
            # Read again from its committed offset: the partition went to another consumer and
            # came back. What is still in flight from before commits nothing any more (its
            # events are delivered again; the claims drop what it finishes).
            entries = self._partitions[partition] = deque()
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

        assert self._slots is not None
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
            self._slots.release()
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
        """At stop (beside the broker's): start nothing more, give what is in flight ``grace``
        seconds to finish and commit it; what is still going then is abandoned, uncommitted
        (delivered again)."""
        self._stopping = True
        try:
            if self._tasks:
                _done, held = await asyncio.wait(set(self._tasks), timeout=grace)
                for task in held:
                    log.warning(
                        "event abandoned at stop; it will be delivered again", group=self.group
                    )
                    await stop_task(task)
            await self._commit()
        finally:
            self._drained.set()

    def _count(self, outcome: str) -> None:
        CONSUMER_MESSAGES.labels(self.consumers.service, self.topic.name, self.group, outcome).inc()
