"""Thin consumers: a batch of events → metering, then the quota state of the tenants touched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentIndexed,
    TokensConsumed,
)
from docuchat_common.events.consumer import publish_dead_letter
from docuchat_common.events.topics import DOCUMENTS, TOKENS
from docuchat_common.logging import get_logger
from docuchat_common.metrics import CONSUMER_LATENCY, CONSUMER_MESSAGES
from docuchat_common.service import ServiceRuntime
from docuchat_common.tasks import finish_or_abandon
from docuchat_usage.metering.repository import MeteringRepository
from docuchat_usage.metering.schemas import (
    TokensConsumedRecord,
    decode_strictly,
    decode_tokens_consumed,
)
from docuchat_usage.metering.service import MeteringService
from docuchat_usage.quotas.service import QuotaService

log = get_logger(__name__)

TOKENS_GROUP = "usage.tokens"
DOCUMENTS_GROUP = "usage.documents"
TOKENS_BATCH = 10_000
# Transactions per batch, each over its own tenants, committing in parallel: the database, not
# the decoding, bounds metering. With two, a quarter of two cores sat idle while each lane
# waited on its round trips and its commit; three fill part of that (bench.usage: +8%).
TOKENS_LANES = 3
OFFSET_COMMIT_TIMEOUT = 30.0  # seconds
YIELD_EVERY = 250  # records decoded between two looks at the transaction in flight


def register(runtime: ServiceRuntime) -> None:
    async def on_documents(events: list[Any], session: AsyncSession) -> None:
        """Count indexed documents and their storage; deleted ones stop counting."""
        metering = MeteringRepository(session)
        touched = set()
        for event in events:
            if event.tenant_id is None:
                continue
            if isinstance(event, DocumentIndexed):
                await metering.document_indexed(
                    event.tenant_id, event.data.document_id, event.data.size_bytes
                )
            elif isinstance(event, DocumentDeleted):
                await metering.document_deleted(event.tenant_id, event.data.document_id)
            touched.add(event.tenant_id)
        await QuotaService(session, runtime.outbox).evaluate(touched)

    TokensConsumer(runtime).subscribe()
    runtime.consumers.subscribe_batch(
        DOCUMENTS, [DocumentIndexed, DocumentDeleted], group=DOCUMENTS_GROUP, handler=on_documents
    )


@dataclass
class Batch:
    """Token events in the order they came, each beside the record it came in."""

    events: list[TokensConsumedRecord]
    records: list[ConsumerRecord[Any, Any]]

    def lanes(self, count: int) -> list[Batch]:
        """The batch split by tenant into up to ``count`` lanes, each in its own order: their
        transactions never touch the same rows, so they run in parallel without waiting on
        each other (or deadlocking), and they are about the same size whatever partitions
        the batch came from."""
        if count == 1 or not self.events:
            return [self] if self.events else []
        lanes = [Batch([], []) for _ in range(count)]
        for event, record in zip(self.events, self.records, strict=True):
            tenant = event.tenant_id
            # Lower case: one tenant however spelled (PostgreSQL reads both as one UUID).
            lane = lanes[hash(tenant.lower()) % count if tenant is not None else 0]
            lane.events.append(event)
            lane.records.append(record)
        return [lane for lane in lanes if lane.events]


class TokensConsumer:
    """Meters ``docuchat.tokens``: the one high-volume stream, so it has its own hot path.

    The shared ``EventConsumers.subscribe_batch`` decodes every message twice (FastStream's
    JSON decode, then pydantic), claims events through an ORM executemany and leaves the
    process idle while each batch's transaction runs: about 7k events/s. Here the subscriber
    takes the batch's raw bytes, decodes them with one msgspec struct and hands them, column by
    column, to one statement that claims and sums them in PostgreSQL (the per-event work runs
    on the database's core, not in this process's Python); batch N+1 is fetched and
    decoded while batch N's transactions run (one per lane of tenants, in parallel; one batch in
    flight; its offsets committed by hand once all its transactions have committed).
    The guarantees are those of ``subscribe_batch``, one for one:

    - a message the struct refuses is decided by the catalog's pydantic models as before:
      another event type or version is skipped, a malformed one goes to ``<topic>.dlq``;
    - duplicates are dropped by the claim in ``metered_events`` (this consumer's own narrow
      ``processed_events``), whatever the group, so a second group replaying the topic changes
      nothing; a redelivery inside the batch keeps the first copy (a copy in another lane
      loses to it at the claim);
    - the claim, the counters and the quota state of the tenants touched commit together; a
      failing batch is retried, then replayed one event per transaction so only the poison one
      is dead-lettered;
    - a batch's offsets are committed only after the transactions holding its events have
      committed: whatever is in flight when the process stops or the group rebalances is
      simply delivered again, and the claim drops it.
    """

    def __init__(self, runtime: ServiceRuntime, *, max_records: int = TOKENS_BATCH) -> None:
        self.runtime = runtime
        self.consumers = runtime.consumers
        self.max_records = max_records
        self.group = runtime.consumers.group_prefix + TOKENS_GROUP
        self.in_flight: list[asyncio.Task[None]] = []
        self.stopping = False

    def subscribe(self) -> None:
        self.consumers.subscribe_records(
            TOKENS,
            [TokensConsumed],
            group=self.group,
            take=self.take,
            # The batch in flight commits its offsets before the Kafka consumer closes.
            drain=self.drain,
            description=(
                "Meter LLM and embedding tokens; tenants crossing a threshold get quota.changed."
            ),
            max_records=self.max_records,
            # Room for a whole batch and the next one in the fetch buffer.
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def take(
        self, records: Sequence[ConsumerRecord[Any, Any]], consumer: AIOKafkaConsumer
    ) -> None:
        """Decode a batch (while the previous one's transactions run), then hand it to the
        database, one transaction per lane of tenants, and return for the next one."""
        lanes = (await self.decode(list(records))).lanes(TOKENS_LANES)
        in_flight, self.in_flight = self.in_flight, []
        await asyncio.gather(*in_flight)
        # Made only now: a stop that cancels the wait above leaves no coroutine unawaited (the
        # batch is simply delivered again).
        commit = self.commit(lanes, _offsets_after(records), consumer)
        if self.stopping:
            await commit
            return
        self.in_flight = [asyncio.create_task(commit)]
        await asyncio.sleep(0)  # let it send its first statements before Kafka has us again

    async def drain(self, grace: float) -> None:
        """At stop: the batch in flight gets ``grace`` seconds (any later batch is handled
        inline). A batch held by a database outage would keep the stop waiting: past the grace
        it is abandoned, its offsets uncommitted (delivered again; the claims make that safe)."""
        in_flight, self.in_flight = self.in_flight, []
        self.stopping = True
        await finish_or_abandon(in_flight, grace, what="token batch")

    async def decode(self, records: list[ConsumerRecord[Any, Any]]) -> Batch:
        """The batch's token events, each with the record it came in (for the DLQ). Usually
        the struct takes them all at once; otherwise each message is decided on its own:
        another type or version is skipped, a malformed one dead-lettered."""
        events = decode_strictly([record.value for record in records])
        if events is not None:
            return Batch(events, records)
        batch = Batch([], [])
        for index, record in enumerate(records):
            if index % YIELD_EVERY == 0:
                # The transaction in flight reads its replies and sends its next statement.
                await asyncio.sleep(0)
            try:
                event = decode_tokens_consumed(record.value)
            except ValidationError as exc:
                await self._dead_letter(record, exc, attempts=1)
                continue
            if event is None:
                self._count("ignored")
                continue
            batch.events.append(event)
            batch.records.append(record)
        return batch

    async def commit(
        self, lanes: list[Batch], offsets: dict[TopicPartition, int], consumer: AIOKafkaConsumer
    ) -> None:
        """Meter the lanes (in parallel), then commit the batch's offsets. Never raises: it
        runs unattended."""
        started = time.perf_counter()
        try:
            await asyncio.gather(*(self._meter(lane) for lane in lanes))
            # Bounded: aiokafka retries a commit for as long as the coordinator is unavailable,
            # and the next batch waits for this one.
            async with asyncio.timeout(OFFSET_COMMIT_TIMEOUT):
                await consumer.commit(offsets)
        except Exception:
            # Not committed: the batch comes again (after a restart or a rebalance) and the
            # claims drop what was metered.
            log.warning("token batch offsets not committed", exc_info=True)
        CONSUMER_LATENCY.labels(self.runtime.name, TOKENS.name, self.group).observe(
            time.perf_counter() - started
        )

    async def _meter(self, batch: Batch) -> None:
        await self.consumers.handle_claimed_batch(
            batch.events, batch.records, self._run_claimed, topic=TOKENS.name, group=self.group
        )

    async def _run_claimed(self, events: Sequence[TokensConsumedRecord]) -> int:
        """One transaction: claim the events, meter those that were new, recompute the quota
        state of the tenants touched. Returns how many were new."""
        async with self.runtime.database.transaction() as session:
            metering = MeteringService(MeteringRepository(session))
            new, touched = await metering.record_tokens(events)
            await QuotaService(session, self.runtime.outbox).evaluate(touched)
            return new

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], cause: BaseException, *, attempts: int
    ) -> None:
        await publish_dead_letter(
            self.runtime.broker,
            record,
            cause=cause,
            attempts=attempts,
            group=self.group,
            service=self.runtime.name,
        )

    def _count(self, outcome: str, amount: int = 1) -> None:
        if amount:
            CONSUMER_MESSAGES.labels(self.runtime.name, TOKENS.name, self.group, outcome).inc(
                amount
            )


def _offsets_after(records: Sequence[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """Per partition, the offset to commit once these records are handled (the next one). A
    partition's records come in offset order, so its last one is its highest."""
    last = {(record.topic, record.partition): record.offset for record in records}
    return {TopicPartition(*partition): offset + 1 for partition, offset in last.items()}
