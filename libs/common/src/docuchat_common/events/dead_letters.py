"""Reading and replaying dead letters (``<topic>.dlq``), for operators (``docuchat dlq``).

A dead letter is the original message (bytes, key, headers) with the reason in ``x-dlq-*``
headers (see :mod:`docuchat_common.events.consumer`). Once its cause is fixed, replaying it
into its original topic is safe: every consumer is idempotent by event id, so the groups that
handled it before skip it and the one that failed handles it now.

Replay reads the DLQ in a consumer group of its own and commits as it goes, so each letter is
replayed once, however often the command runs. A letter that is not an event envelope (it
failed parsing, not handling) would only fail again: it is skipped and reported.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from docuchat_common.events.consumer import (
    DLQ_ATTEMPTS_HEADER,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    DLQ_ORIGIN_HEADER,
)
from docuchat_common.events.topics import DLQ_SUFFIX

REPLAY_GROUP = "docuchat.dlq-replay"
REPLAYED_FROM_HEADER = "x-dlq-replayed-from"
_DLQ_HEADERS = frozenset(
    {
        DLQ_ERROR_HEADER,
        DLQ_ERROR_TYPE_HEADER,
        DLQ_ATTEMPTS_HEADER,
        DLQ_ORIGIN_HEADER,
        DLQ_CONSUMER_HEADER,
        REPLAYED_FROM_HEADER,
    }
)
_ENVELOPE_FIELDS = frozenset({"id", "type", "version", "data"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # the original topic
    partition: int
    offset: int  # in the DLQ
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def consumer(self) -> str:
        return self.headers.get(DLQ_CONSUMER_HEADER, "?")

    @property
    def error_type(self) -> str:
        return self.headers.get(DLQ_ERROR_TYPE_HEADER, "?")

    @property
    def error(self) -> str:
        return self.headers.get(DLQ_ERROR_HEADER, "")

    @property
    def replayable(self) -> bool:
        """Whether it is an event envelope (it failed handling, not parsing)."""
        try:
            body = json.loads(self.value)
        except ValueError:
            return False
        return isinstance(body, dict) and body.keys() >= _ENVELOPE_FIELDS

    def replay_headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v.encode()) for k, v in self.headers.items() if k not in _DLQ_HEADERS]
        origin = f"{self.topic}{DLQ_SUFFIX}/{self.partition}/{self.offset}"
        return [*kept, (REPLAYED_FROM_HEADER, origin.encode())]


@dataclass
class DeadLetterReport:
    """What a look at (or a replay of) a DLQ found."""

    topic: str
    letters: int = 0
    replayed: int = 0
    skipped: list[DeadLetter] = field(default_factory=list)
    causes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (consumer, error type)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, letter: DeadLetter) -> None:
        self.letters += 1
        cause = (letter.consumer, letter.error_type)
        self.causes[cause] += 1
        self.examples.setdefault(cause, letter.error[:300])


def _letter(topic: str, record: Any) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
    )


async def _read(consumer: Any, dlq: str, *, from_committed: bool) -> list[Any]:
    """The DLQ's records from the group's committed offset (or the beginning) to its end now."""
    from aiokafka import TopicPartition

    partitions = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or {0})]
    consumer.assign(partitions)
    ends: dict[Any, int] = await consumer.end_offsets(partitions)
    for tp in partitions:
        committed = await consumer.committed(tp) if from_committed else None
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    records: list[Any] = []
    while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        batch = await consumer.getmany(*partitions, timeout_ms=1000)
        for tp, recs in batch.items():
            records += [r for r in recs if r.offset < ends[tp]]
    return records


async def inspect_dead_letters(bootstrap_servers: str, topic: str) -> DeadLetterReport:
    """Every letter now in ``<topic>.dlq``, counted by consumer and error type."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata: the DLQ's partitions
        report = DeadLetterReport(topic)
        for record in await _read(consumer, topic + DLQ_SUFFIX, from_committed=False):
            report.add(_letter(topic, record))
        return report
    finally:
        await consumer.stop()


async def replay_dead_letters(
    bootstrap_servers: str,
    topic: str,
    *,
    group: str = REPLAY_GROUP,
    dry_run: bool = False,
) -> DeadLetterReport:
    """Republish the letters of ``<topic>.dlq`` not replayed yet (by ``group``) into ``topic``,
    key and headers kept (fix every cause first: ``inspect_dead_letters`` lists them).
    ``dry_run`` publishes and commits nothing."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    dlq = topic + DLQ_SUFFIX
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()  # metadata: the DLQ's partitions
        report = DeadLetterReport(topic)
        commit: dict[Any, int] = {}
        for record in await _read(consumer, dlq, from_committed=True):
            letter = _letter(topic, record)
            report.add(letter)
            commit[TopicPartition(dlq, record.partition)] = record.offset + 1
            if not letter.replayable:
                report.skipped.append(letter)
                continue
            if not dry_run:
                await producer.send_and_wait(
                    topic, letter.value, key=letter.key, headers=letter.replay_headers()
                )
            report.replayed += 1
        if commit and not dry_run:
            await consumer.commit(commit)
        return report
    finally:
        await producer.stop()
        await consumer.stop()
