"""FastStream batch subscribers that hand their handler the Kafka records as they came.

For consumers that decode, commit and trace per record themselves (usage's token stream,
ingest's document window): FastStream's own batch path JSON-decodes every body and reads every
record's headers first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka.annotations import KafkaMessage


async def parse_records(
    records: tuple[Any, ...],
    default_parser: Callable[[tuple[Any, ...]], Awaitable[KafkaMessage]],
) -> KafkaMessage:
    """FastStream parser: the default one reads every record's headers (and tracing then
    extracts a context from each); the batch is traced as its first record's, and keeps all
    its records in ``raw_message``."""
    message = await default_parser(records[:1])
    message.raw_message = records
    message.body = [record.value for record in records]
    return message


def raw_values(message: KafkaMessage) -> list[bytes]:
    """FastStream decoder: the batch's bytes as they are (the handler decodes them)."""
    body: list[bytes] = message.body  # type: ignore[assignment]
    return body
