"""The metering hot path's view of ``tokens.consumed``: msgspec structs decoded straight from
Kafka bytes.

They mirror the catalog's ``TokensConsumed`` v1 (docuchat_common.events.catalog) but are
stricter: every envelope field the metering needs must be present and of its exact JSON type.
Ids stay the 36-character strings they came as: PostgreSQL reads them as UUIDs (so every
spelling of one UUID is one id) and refuses any that is not one, which fails the batch and
dead-letters that event alone (see the consumer). Building three ``uuid.UUID`` objects per event
in Python cost more than the rest of decoding.
Whatever they refuse (another type or version, a lax but valid encoding, garbage) is not an
error here: the caller hands it to the catalog's pydantic models, which decide as they always
did (metered, skipped as unknown, or dead-lettered as malformed).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import TypeAdapter

from docuchat_common.events.catalog import TokensConsumed, event_union

# A UUID's hyphenated spelling; PostgreSQL checks the digits.
UUIDText = Annotated[str, msgspec.Meta(min_length=36, max_length=36)]


class TokensConsumedPayload(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    user_id: UUIDText | None = None
    kind: Literal["chat", "embedding"]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    reference: str | None = None


class TokensConsumedRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One ``tokens.consumed`` v1 event; unknown fields (additive changes) are ignored."""

    id: UUIDText
    type: Literal["tokens.consumed"]
    version: Literal[1]
    # With its offset: the hour, day and month it counts in are UTC ones (a naive time is
    # refused here; the catalog's path reads it as UTC).
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    tenant_id: UUIDText | None
    source: str
    correlation_id: str | None = None
    data: TokensConsumedPayload

    @classmethod
    def from_event(cls, event: TokensConsumed) -> TokensConsumedRecord:
        """The same event, validated by the catalog's pydantic model instead."""
        data = event.data
        return cls(
            id=str(event.id),
            type="tokens.consumed",
            version=1,
            occurred_at=(
                event.occurred_at
                if event.occurred_at.tzinfo is not None
                else event.occurred_at.replace(tzinfo=UTC)
            ),
            tenant_id=_text(event.tenant_id),
            source=event.source,
            correlation_id=event.correlation_id,
            data=TokensConsumedPayload(
                user_id=_text(data.user_id),
                kind=data.kind,
                model=data.model,
                prompt_tokens=data.prompt_tokens,
                completion_tokens=data.completion_tokens,
                embedding_tokens=data.embedding_tokens,
                reference=data.reference,
            ),
        )


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


TOKENS_CONSUMED_DECODER = msgspec.json.Decoder(TokensConsumedRecord)
# What decides when the struct refuses, exactly as the shared consumers do.
CATALOG: TypeAdapter[Any] = TypeAdapter(event_union(TokensConsumed))


def decode_strictly(values: Sequence[bytes | None]) -> list[TokensConsumedRecord] | None:
    """A whole batch through the struct alone (the common case, at C speed), or None when it
    refuses any message: then each is decided on its own by ``decode_tokens_consumed``."""
    decode = TOKENS_CONSUMED_DECODER.decode
    try:
        return [decode(value) for value in values]  # type: ignore[arg-type]
    except (msgspec.ValidationError, msgspec.DecodeError, TypeError):  # TypeError: a None
        return None


def decode_tokens_consumed(value: bytes | None) -> TokensConsumedRecord | None:
    """A message from the tokens topic: the event, or None for another event type or version
    (skipped). Raises pydantic's ``ValidationError`` for a malformed one (dead-lettered)."""
    if value is not None:
        try:
            return TOKENS_CONSUMED_DECODER.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    event = CATALOG.validate_json(value or b"")
    return TokensConsumedRecord.from_event(event) if isinstance(event, TokensConsumed) else None
