"""Consumers: thin handlers (message → service call), idempotent, retried, dead-lettered.

``EventConsumers.subscribe`` registers a FastStream subscriber whose body annotation is the
union of the events the handler accepts, so FastStream validates it and documents it in
AsyncAPI. Around the handler:

- the correlation id and tenant id from the envelope are bound to logs and context;
- the handler runs in one transaction together with the processed-event row, so a redelivered
  event (same id) has no second effect; a ``SlowHandler`` (work that takes minutes) works
  outside any transaction and records its result in the claim's transaction;
- a failing handler is retried with backoff; after ``max_attempts`` the original message goes to
  ``<topic>.dlq`` with the error in its headers and the consumer moves on. A message that cannot
  even be parsed goes there at once. The offset is committed after either outcome, never before.
- a failure while the database is unreachable says nothing about the event: nothing is
  dead-lettered then; the consumer holds its message until the database answers again and
  handles it then (a failover or restart of PostgreSQL costs delay, not dead letters).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import SkipValidation
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from docuchat_common.context import bound_context
from docuchat_common.db import Database
from docuchat_common.events.envelope import Event, UnknownEvent
from docuchat_common.events.records import parse_records, raw_values
from docuchat_common.events.topics import CONSUMER_TIMEOUT_MS, DLQ_SUFFIX, Topic
from docuchat_common.events.windowed import WindowedSubscriber
from docuchat_common.logging import get_logger
from docuchat_common.metrics import (
    CONSUMER_ERRORS,
    CONSUMER_HELD,
    CONSUMER_LATENCY,
    CONSUMER_MESSAGES,
)

log = get_logger(__name__)

EventHandler = Callable[[Any, AsyncSession], Awaitable[None]]
BatchHandler = Callable[[list[Any], AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SlowHandler:
    """A handler in two steps, for work that takes seconds to minutes (indexing a document).

    ``work(event)`` runs outside any transaction; ``record(event, result, session)`` then runs
    in the short transaction that claims the event. A transaction held open for the whole work
    would pin a pooled connection "idle in transaction" for minutes, hold back vacuum's horizon
    on every table of the database and fall to any ``idle_in_transaction_session_timeout``.
    Meanwhile the event is held by an advisory lock (see ``Database.advisory_lock``): a second
    delivery of it (a rebalance) waits, then finds it claimed, exactly as a second delivery
    waits on the claim of a transaction in progress.
    """

    work: Callable[[Any], Awaitable[Any]]
    record: Callable[[Any, Any, AsyncSession], Awaitable[None]]
    # What AsyncAPI says the channel is for.
    description: str | None = None


AnyHandler = EventHandler | SlowHandler

DLQ_ERROR_HEADER = "x-dlq-error"
DLQ_ERROR_TYPE_HEADER = "x-dlq-error-type"
DLQ_ATTEMPTS_HEADER = "x-dlq-attempts"
DLQ_ORIGIN_HEADER = "x-dlq-origin"  # topic/partition/offset of the original message
DLQ_CONSUMER_HEADER = "x-dlq-consumer"


async def claim_event(
    session: AsyncSession, table: Table, consumer: str, event: Event[Any]
) -> bool:
    """Record the event as processed by ``consumer``; False when it already was."""
    stmt = (
        pg_insert(table)
        .values(consumer=consumer, event_id=event.id, event_type=event.type)
        .on_conflict_do_nothing()
        .returning(table.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None


async def publish_dead_letter(
    broker: KafkaBroker,
    record: Any,
    *,
    cause: BaseException,
    attempts: int,
    group: str,
    service: str,
) -> None:
    """Send the original message (bytes, key, headers) to ``<topic>.dlq``, the error in headers."""
    topic = str(getattr(record, "topic", "unknown"))
    headers = {
        k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
        for k, v in (getattr(record, "headers", None) or ())
    }
    headers.update(
        {
            DLQ_ERROR_HEADER: str(cause)[:2000],
            DLQ_ERROR_TYPE_HEADER: type(cause).__name__,
            DLQ_ATTEMPTS_HEADER: str(attempts),
            DLQ_ORIGIN_HEADER: (
                f"{topic}/{getattr(record, 'partition', '?')}/{getattr(record, 'offset', '?')}"
            ),
            DLQ_CONSUMER_HEADER: group,
        }
    )
    await broker.publish(
        getattr(record, "value", b"") or b"",
        topic=topic + DLQ_SUFFIX,
        key=getattr(record, "key", None),
        headers=headers,
    )
    CONSUMER_MESSAGES.labels(service, topic, group, "dead_lettered").inc()
    log.error(
        "message dead-lettered",
        topic=topic,
        group=group,
        attempts=attempts,
        error_type=type(cause).__name__,
        error="".join(traceback.format_exception_only(cause)).strip()[:500],
    )


async def claim_events(
    session: AsyncSession, table: Table, consumer: str, events: list[Event[Any]]
) -> set[Any]:
    """Record many events as processed at once; returns the ids that were not yet."""
    if not events:
        return set()
    stmt = pg_insert(table).on_conflict_do_nothing().returning(table.c.event_id)
    rows = [{"consumer": consumer, "event_id": e.id, "event_type": e.type} for e in events]
    return {row[0] for row in await session.execute(stmt, rows)}


# A message whose handling loses the database connection while the database stays up is
# handled again this many times before the DLQ takes it (it may be breaking its connection).
LOST_CONNECTION_ROUNDS = 3
# How long a background consumer's fetch waits on an idle topic (the default is 500 ms). A
# broker that holds an empty fetch for its whole wait, as tansu does, answers each idle
# consumer twice a second otherwise, and every consumer costs the broker and the process CPU
# even when nothing happens; an event then waits about half of this before it is handled.
BACKGROUND_FETCH_WAIT_MS = 2_000
DEFAULT_FETCH_WAIT_MS = 500  # aiokafka's


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it came from, is SQLAlchemy's word that the database
    connection broke (a terminated backend, a failover): no fault of the event."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _described(handler: Callable[..., Any] | SlowHandler) -> str | None:
    """A handler's docstring as AsyncAPI's channel description (without its indentation)."""
    if isinstance(handler, SlowHandler):
        return handler.description
    return inspect.cleandoc(handler.__doc__) if handler.__doc__ else None


async def event_claimed(
    connection: AsyncConnection, table: Table, consumer: str, event: Event[Any]
) -> bool:
    """Whether ``consumer`` has already processed the event (without claiming it)."""
    found = await connection.execute(
        select(table.c.event_id).where(table.c.consumer == consumer, table.c.event_id == event.id)
    )
    return found.first() is not None


class HandlerFailedError(Exception):
    def __init__(self, attempts: int, cause: BaseException, group: str) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.attempts = attempts
        self.cause = cause
        self.group = group


def dead_letter_middleware(
    service: str,
) -> tuple[type[BaseMiddleware], Callable[[KafkaBroker], None]]:
    """A broker middleware (it must wrap parsing too, which only broker middlewares do) and the
    function that tells it which broker to publish dead letters with."""
    holder: dict[str, KafkaBroker] = {}

    class DeadLetterMiddleware(BaseMiddleware):
        """Publishes what could not be handled to ``<topic>.dlq`` and lets the offset commit."""

        async def after_processed(
            self,
            exc_type: type[BaseException] | None = None,
            exc_val: BaseException | None = None,
            exc_tb: Any = None,
        ) -> bool | None:
            if exc_val is None or not isinstance(exc_val, Exception):
                return False
            record = self.msg
            topic = getattr(record, "topic", None)
            broker = holder.get("broker")
            if topic is None or broker is None:
                return False
            failed = exc_val if isinstance(exc_val, HandlerFailedError) else None
            await publish_dead_letter(
                broker,
                record,
                cause=failed.cause if failed else exc_val,
                attempts=failed.attempts if failed else 1,
                group=failed.group if failed else f"{service} (parsing)",
                service=service,
            )
            return True  # handled: the offset is committed and the partition moves on

    def bind(broker: KafkaBroker) -> None:
        holder["broker"] = broker

    return DeadLetterMiddleware, bind


class EventConsumers:
    """Registers a service's consumers on its broker."""

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        database: Database,
        processed_table: Table,
        service: str,
        max_attempts: int = 3,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        retry_wait_max: float = 2.0,
        group_prefix: str = "",
    ) -> None:
        self.broker = broker
        self.database = database
        self.processed_table = processed_table
        self.service = service
        self.max_attempts = max_attempts
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.retry_wait_max = retry_wait_max
        self.group_prefix = group_prefix
        self.groups: list[tuple[str, str]] = []
        self.outage_poll_max = 5.0
        self.windows: list[WindowedSubscriber] = []
        self._draining: list[tuple[Any, Callable[[float], Awaitable[None]]]] = []

    def retrying(self) -> AsyncRetrying:
        """In-process retries of a handler: ``max_attempts``, exponential backoff."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=0.05, max=self.retry_wait_max),
            reraise=True,
        )

    async def _database_down(self) -> bool:
        """Whether the database is unreachable now (then a failure is no fault of the event)."""
        try:
            async with asyncio.timeout(5):
                await self.database.ping()
        except Exception:
            return True
        return False

    async def outlast_database_outage(
        self, group: str, cause: BaseException | None = None, *, lost_before: int = 0
    ) -> bool:
        """Whether the caller should handle its message again instead of dead-lettering it:
        if the database is unreachable, after waiting until it answers; if ``cause`` says the
        connection broke but the database answers already (it came back between the last
        attempt and this check), at once, up to ``LOST_CONNECTION_ROUNDS`` times per message
        (``lost_before`` says how many it had) so that a message whose handling breaks its
        connection every time still ends in the DLQ."""
        if not await self._database_down():
            if cause is None or not connection_lost(cause) or lost_before >= LOST_CONNECTION_ROUNDS:
                return False
            log.info("database connection lost, database back; handling the message again")
            return True
        log.warning("database unreachable; holding the message until it answers", group=group)
        held = CONSUMER_HELD.labels(self.service, group)
        held.inc()
        try:
            delay = 0.2
            while await self._database_down():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.outage_poll_max)
        finally:
            held.dec()
        log.info("database reachable again; handling the held message", group=group)
        return True

    def subscribe(
        self,
        topic: Topic,
        events: Sequence[type[Event[Any]]],
        *,
        group: str,
        handler: EventHandler,
        description: str | None = None,
        background: bool = False,
    ) -> None:
        """Handle each event of ``events`` on ``topic`` once, in its own transaction (claimed by
        ``group``). ``background``: nobody waits on the outcome within the second (a purge),
        so an idle consumer asks the broker less often (see ``BACKGROUND_FETCH_WAIT_MS``)."""
        from docuchat_common.events.catalog import event_union

        body_type = event_union(*events)
        # Dedupe by the logical consumer, not the Kafka group: a second group replaying the
        # topic into the same database (a prefix, a migration) must have no second effect.
        consumer = group
        group = self.group_prefix + group
        wanted = tuple(events)

        async def handle(event: Any, message: KafkaMessage) -> None:
            started = time.perf_counter()
            outcome = await self.handle_one(
                event, message, group=group, consumer=consumer, handler=handler, wanted=wanted
            )
            CONSUMER_MESSAGES.labels(self.service, topic.name, group, outcome).inc()
            CONSUMER_LATENCY.labels(self.service, topic.name, group).observe(
                time.perf_counter() - started
            )

        handle.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "event", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body_type
                ),
                inspect.Parameter(
                    "message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=KafkaMessage
                ),
            ],
            return_annotation=None,
        )
        handle.__annotations__ = {"event": body_type, "message": KafkaMessage, "return": None}
        self._register(
            handle,
            topic,
            group,
            description or _described(handler),
            fetch_max_wait_ms=BACKGROUND_FETCH_WAIT_MS if background else DEFAULT_FETCH_WAIT_MS,
        )

    def subscribe_batch(
        self,
        topic: Topic,
        events: Sequence[type[Event[Any]]],
        *,
        group: str,
        handler: BatchHandler,
        max_records: int = 500,
        batch_timeout_ms: int = 20,
        description: str | None = None,
    ) -> None:
        """Like :meth:`subscribe`, for high-volume topics: up to ``max_records`` messages are
        handled in one transaction. Duplicates are dropped by one multi-row claim; a message
        that does not parse goes to the DLQ alone; a batch that keeps failing is replayed one
        event per transaction, so only the poison one is dead-lettered."""
        from pydantic import TypeAdapter, ValidationError

        from docuchat_common.events.catalog import event_union

        consumer = group  # claims are per logical consumer (see subscribe)
        group = self.group_prefix + group
        wanted = tuple(events)
        adapter: TypeAdapter[Any] = TypeAdapter(event_union(*events))

        async def handle(bodies: list[Any], message: KafkaMessage) -> None:
            started = time.perf_counter()
            records = list(getattr(message, "raw_message", ()) or ())
            parsed: list[tuple[Event[Any], Any]] = []
            for index, body in enumerate(bodies):
                record = records[index] if index < len(records) else None
                try:
                    event = adapter.validate_python(body)
                except ValidationError as exc:
                    await publish_dead_letter(
                        self.broker,
                        record,
                        cause=exc,
                        attempts=1,
                        group=group,
                        service=self.service,
                    )
                    continue
                if isinstance(event, UnknownEvent) or not isinstance(event, wanted):
                    CONSUMER_MESSAGES.labels(self.service, topic.name, group, "ignored").inc()
                    continue
                parsed.append((event, record))
            if parsed:
                await self._handle_batch(parsed, group, consumer, topic, handler)
            CONSUMER_LATENCY.labels(self.service, topic.name, group).observe(
                time.perf_counter() - started
            )

        self._register(
            handle,
            topic,
            group,
            description or _described(handler),
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
        )

    def subscribe_windowed(
        self,
        topic: Topic,
        events: Sequence[type[Event[Any]]],
        *,
        group: str,
        handler: AnyHandler,
        window: int,
        ordering_key: Callable[[Any], Hashable],
        description: str | None = None,
    ) -> None:
        """Like :meth:`subscribe`, for slow handlers: up to ``window`` events handled at once,
        those with the same ``ordering_key`` in their order (see ``windowed``)."""
        subscriber = WindowedSubscriber(
            self,
            topic=topic,
            events=events,
            group=self.group_prefix + group,
            consumer=group,  # claims are per logical consumer (see subscribe)
            handler=handler,
            window=window,
            ordering_key=ordering_key,
        )
        self.subscribe_records(
            topic,
            events,
            group=subscriber.group,
            take=subscriber.take,
            drain=subscriber.drain,
            description=description or _described(handler),
            max_records=window,
            listener=subscriber.rebalance_listener(),
            # An idle worker picks a new event up within ~0.1 s rather than ~0.5 s: tansu holds
            # an empty fetch for its whole wait (see the quota guard).
            fetch_max_wait_ms=100,
        )
        self.windows.append(subscriber)

    def subscribe_records(
        self,
        topic: Topic,
        events: Sequence[type[Event[Any]]],
        *,
        group: str,
        take: Callable[[Sequence[Any], Any], Awaitable[None]],
        drain: Callable[[float], Awaitable[None]],
        description: str | None,
        max_records: int,
        **options: Any,
    ) -> Any:
        """Subscribe a consumer with a path of its own: ``take(records, kafka_consumer)`` gets
        each batch's Kafka records as they came and commits their offsets by hand (it may
        return before they are done); ``drain(grace)`` runs at stop, before the Kafka consumer
        closes. ``group`` is the whole group id. AsyncAPI documents ``events``. Returns
        FastStream's subscriber."""
        from docuchat_common.events.catalog import event_union

        async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
            try:
                await take(message.raw_message, message.consumer)
            except Exception:
                # Not one of its events may be passed over (the next batch's offsets would):
                # the consumer goes back to the batch's first offsets and reads it again.
                await message.nack()
                raise

        # FastStream passes the bytes through unvalidated.
        handle.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "bodies",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=SkipValidation[list[event_union(*events)]],  # type: ignore[misc]
                ),
                inspect.Parameter(
                    "message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=KafkaMessage
                ),
            ],
            return_annotation=None,
        )
        subscriber = self._register(
            handle,
            topic,
            group,
            description,
            # Committed by ``take`` (or what it starts), once its work is done.
            ack_policy=AckPolicy.MANUAL,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=20,
            parser=parse_records,
            decoder=raw_values,
            **options,
        )
        self.drain_before_close(subscriber, drain)
        return subscriber

    def drain_before_close(
        self, subscriber: Any, drain: Callable[[float], Awaitable[None]]
    ) -> None:
        """At stop, run ``drain(grace)`` before the FastStream ``subscriber``'s Kafka consumer
        closes: a consumer that commits its offsets by hand after work of its own (windowed,
        usage's token stream) can still commit what it finishes."""
        self._draining.append((subscriber, drain))

    async def stop(self, grace: float) -> None:
        """Stop consuming, within one graceful timeout: every subscriber finishes (or abandons)
        its message while those that commit by hand drain (finish or abandon their work in
        flight, and commit it) before their Kafka consumers close; then the broker."""
        held = [subscriber for subscriber, _ in self._draining]

        async def drained() -> None:
            await asyncio.gather(*(drain(grace) for _, drain in self._draining))
            await asyncio.gather(*(subscriber.stop() for subscriber in held))

        others = [s for s in self.broker.subscribers if all(s is not h for h in held)]
        await asyncio.gather(drained(), *(subscriber.stop() for subscriber in others))
        await self.broker.stop()

    def _register(
        self,
        handle: Callable[..., Awaitable[None]],
        topic: Topic,
        group: str,
        description: str | None,
        *,
        ack_policy: AckPolicy = AckPolicy.ACK,
        **options: Any,
    ) -> Any:
        """Subscribe ``handle`` from the earliest offset; by default the offset is committed
        after handling. Returns FastStream's subscriber."""
        handle.__name__ = f"{group}__{topic.name}".replace(".", "_").replace("-", "_")
        handle.__doc__ = description
        subscriber = self.broker.subscriber(
            topic.name,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=ack_policy,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
            title=f"{group}:{topic.name}",
            description=description,
            **options,
        )
        subscriber(handle)
        self.groups.append((group, topic.name))
        return subscriber

    async def _run_claimed(
        self, events: list[Event[Any]], consumer: str, handler: BatchHandler
    ) -> int:
        """One transaction: claim, handle what was new. Returns how many were new."""
        async with self.database.transaction() as session:
            fresh = await claim_events(session, self.processed_table, consumer, events)
            # A redelivery can sit in the same batch as the original: keep the first copy only.
            todo = []
            for event in events:
                if event.id in fresh:
                    fresh.remove(event.id)
                    todo.append(event)
            if todo:
                await handler(todo, session)
            return len(todo)

    async def _handle_batch(
        self,
        parsed: list[tuple[Event[Any], Any]],
        group: str,
        consumer: str,
        topic: Topic,
        handler: BatchHandler,
    ) -> None:
        async def run_claimed(events: Sequence[Event[Any]]) -> int:
            return await self._run_claimed(list(events), consumer, handler)

        await self.handle_claimed_batch(
            [event for event, _ in parsed],
            [record for _, record in parsed],
            run_claimed,
            topic=topic.name,
            group=group,
        )

    async def handle_claimed_batch(
        self,
        events: Sequence[Any],
        records: Sequence[Any],
        run_claimed: Callable[[Sequence[Any]], Awaitable[int]],
        *,
        topic: str,
        group: str,
    ) -> None:
        """Handle a batch: ``run_claimed`` (one transaction that claims the events, handles the
        new ones and returns how many were new), retried; if it keeps failing, one event per
        transaction, so only the poison one goes to the DLQ (``records[i]`` is event i's
        message). While the database is unreachable nothing is dead-lettered: the batch waits
        for it and goes on where it was."""
        lost = 0  # rounds handled again after a lost connection (see outlast_database_outage)
        while True:
            try:
                async for attempt_state in self.retrying():
                    with attempt_state:
                        new = await run_claimed(events)
                CONSUMER_MESSAGES.labels(self.service, topic, group, "ok").inc(new)
                CONSUMER_MESSAGES.labels(self.service, topic, group, "duplicate").inc(
                    len(events) - new
                )
                return
            except Exception as exc:
                CONSUMER_ERRORS.labels(self.service, topic, group).inc()
                if await self.outlast_database_outage(group, exc, lost_before=lost):
                    lost += connection_lost(exc)
                    continue
                log.warning(
                    "batch failed; handling its events one by one", size=len(events), exc_info=True
                )
                break
        for event, record in zip(events, records, strict=True):
            lost = 0
            while True:
                try:
                    new = await run_claimed([event])
                except Exception as exc:
                    if await self.outlast_database_outage(group, exc, lost_before=lost):
                        lost += connection_lost(exc)
                        continue  # this event again, now that the database answers
                    await publish_dead_letter(
                        self.broker,
                        record,
                        cause=exc,
                        attempts=self.max_attempts + 1,
                        group=group,
                        service=self.service,
                    )
                else:
                    outcome = "ok" if new else "duplicate"
                    CONSUMER_MESSAGES.labels(self.service, topic, group, outcome).inc()
                break

    async def handle_one(
        self,
        event: Event[Any],
        message: Any,
        *,
        group: str,
        consumer: str,
        handler: AnyHandler,
        wanted: tuple[type[Event[Any]], ...],
    ) -> str:
        """Handle one event (claim, handler, retries, held through a database outage): its
        outcome ("ok", "duplicate", "ignored"), or HandlerFailedError once it keeps failing."""
        tenant = str(event.tenant_id) if event.tenant_id else None
        with bound_context(
            correlation_id=event.correlation_id or getattr(message, "correlation_id", None),
            tenant_id=tenant,
        ):
            if isinstance(event, UnknownEvent) or not isinstance(event, wanted):
                # Debug: a topic carrying many types (document.progressed beside the two usage
                # wants) would otherwise log a line per event skipped.
                log.debug(
                    "event type not handled here; skipped", type=event.type, version=event.version
                )
                return "ignored"
            lost = 0  # rounds handled again after a lost connection
            while True:
                try:
                    return await self._attempt(event, group, consumer, handler)
                except HandlerFailedError as failed:
                    if not await self.outlast_database_outage(
                        group, failed.cause, lost_before=lost
                    ):
                        raise
                    lost += connection_lost(failed.cause)

    async def _attempt(
        self, event: Event[Any], group: str, consumer: str, handler: AnyHandler
    ) -> str:
        """Handle ``event`` with its claim, retried with backoff: "ok" or "duplicate"."""
        once = (
            self._slow(event, consumer, handler)
            if isinstance(handler, SlowHandler)
            else functools.partial(self._once, event, consumer, handler)
        )
        attempt = 0
        outcome = "ok"
        try:
            async for attempt_state in self.retrying():
                with attempt_state:
                    attempt = attempt_state.retry_state.attempt_number
                    try:
                        outcome = await once()
                    except Exception:
                        CONSUMER_ERRORS.labels(self.service, event.topic.name, group).inc()
                        log.warning(
                            "handler failed",
                            attempt=attempt,
                            event_type=event.type,
                            exc_info=True,
                        )
                        raise
        except Exception as exc:
            raise HandlerFailedError(attempt, exc, group) from exc
        if outcome == "duplicate":
            log.info("duplicate event skipped", event_id=str(event.id))
        else:
            log.info("event handled", event_type=event.type, event_id=str(event.id), group=group)
        return outcome

    async def _once(self, event: Event[Any], consumer: str, handler: EventHandler) -> str:
        """The handler in one transaction with the event's claim."""
        async with self.database.transaction() as session:
            if not await claim_event(session, self.processed_table, consumer, event):
                return "duplicate"
            await handler(event, session)
        return "ok"

    def _slow(
        self, event: Event[Any], consumer: str, handler: SlowHandler
    ) -> Callable[[], Awaitable[str]]:
        """A slow handler's attempt: its work under the event's advisory lock, outside any
        transaction, then its record in a short one with the claim. A retry after a failed
        record keeps the work done."""
        worked: list[Any] = []  # the work's result, once it has one

        async def once() -> str:
            async with self.database.advisory_lock(f"{consumer}:{event.id}") as locked:
                # Read on the lock's own connection: no second connection per event.
                if not worked:
                    if await event_claimed(locked, self.processed_table, consumer, event):
                        return "duplicate"
                    worked.append(await handler.work(event))
                async with self.database.transaction() as session:
                    # Only claimed already if the lock went with a lost connection meanwhile.
                    if not await claim_event(session, self.processed_table, consumer, event):
                        return "duplicate"
                    await handler.record(event, worked[0], session)
            return "ok"

        return once
