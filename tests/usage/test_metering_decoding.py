"""The metering hot path reads tokens.consumed with a strict msgspec struct; whatever it refuses
is decided by the catalog's pydantic models, as every other consumer decides. PostgreSQL then
claims and sums what it read, in UTC hours, days and months."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from docuchat_common.events.catalog import TokensConsumed, TokensConsumedData
from docuchat_usage.metering.repository import MeteringRepository
from docuchat_usage.metering.schemas import (
    TOKENS_CONSUMED_DECODER,
    TokensConsumedRecord,
    decode_strictly,
    decode_tokens_consumed,
)
from docuchat_usage.models import TenantPeriodUsage, UsageBucket
from docuchat_usage.periods import NIL_USER
from tests.usage.conftest import UsageService


def tokens_event(
    *, at: datetime | None = None, user: uuid.UUID | None = None, **amounts: int
) -> TokensConsumed:
    return TokensConsumed(
        tenant_id=uuid.uuid4(),
        source="chat",
        occurred_at=at or datetime.now(UTC),
        correlation_id="c-1",
        data=TokensConsumedData(
            user_id=user, kind="chat", model="gpt-4o-mini", reference="m-1", **amounts
        ),
    )


def as_dict(event: TokensConsumed) -> dict[str, Any]:
    return event.to_json_dict()


def test_a_published_event_takes_the_fast_path_and_reads_as_the_catalog_reads_it() -> None:
    event = tokens_event(user=uuid.uuid4(), prompt_tokens=120, completion_tokens=30)
    value = event.model_dump_json().encode()

    fast = TOKENS_CONSUMED_DECODER.decode(value)

    assert fast == TokensConsumedRecord.from_event(TokensConsumed.model_validate_json(value))
    assert fast.id == str(event.id)
    assert fast.tenant_id == str(event.tenant_id)
    assert fast.occurred_at == event.occurred_at
    assert (fast.data.prompt_tokens, fast.data.completion_tokens) == (120, 30)
    assert decode_tokens_consumed(value) == fast


def test_a_valid_event_the_struct_refuses_is_read_by_the_catalog_with_canonical_ids() -> None:
    event = tokens_event(user=uuid.uuid4(), prompt_tokens=7)
    body = as_dict(event)
    body["tenant_id"] = body["tenant_id"].upper()  # another spelling of the same UUID
    body["data"]["prompt_tokens"] = "7"  # lax JSON the catalog accepts
    value = json.dumps(body).encode()
    with pytest.raises(msgspec.ValidationError):
        TOKENS_CONSUMED_DECODER.decode(value)

    record = decode_tokens_consumed(value)

    assert record is not None
    assert record.tenant_id == str(event.tenant_id)  # canonical: dedupe and sums hold
    assert record.data.prompt_tokens == 7


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},  # a newer version, published beside v1
        {"type": "tokens.refunded"},  # a type added to the topic later
    ],
)
def test_other_types_and_versions_are_skipped(change: dict[str, Any]) -> None:
    body = {**as_dict(tokens_event(prompt_tokens=5)), **change}
    assert decode_tokens_consumed(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    "value",
    [
        b"{broken",
        b"",
        None,
        json.dumps({"type": "tokens.consumed", "version": 1, "data": {}}).encode(),
    ],
)
def test_malformed_messages_fail_validation_for_the_dlq(value: bytes | None) -> None:
    with pytest.raises(ValidationError):
        decode_tokens_consumed(value)


def test_the_struct_is_no_laxer_than_the_catalog() -> None:
    """A field the metering does not use but the catalog types must still be checked, and an id
    the struct passes on to PostgreSQL must be spelled as long as a UUID (PostgreSQL checks the
    digits: see test_metering)."""
    body = as_dict(tokens_event(prompt_tokens=5))
    body["data"]["reference"] = 5
    with pytest.raises(ValidationError):
        decode_tokens_consumed(json.dumps(body).encode())
    body = as_dict(tokens_event(prompt_tokens=5))
    body["id"] += "\n"
    with pytest.raises(msgspec.ValidationError):
        TOKENS_CONSUMED_DECODER.decode(json.dumps(body).encode())


def record(event: TokensConsumed) -> TokensConsumedRecord:
    return TOKENS_CONSUMED_DECODER.decode(event.model_dump_json().encode())


def test_a_batch_decodes_strictly_or_not_at_all() -> None:
    good = tokens_event(prompt_tokens=3).model_dump_json().encode()
    other_version = json.dumps({**as_dict(tokens_event(prompt_tokens=3)), "version": 2}).encode()

    assert decode_strictly([good, good]) == [record(TokensConsumed.model_validate_json(good))] * 2
    for refused in (other_version, b"{broken", None):
        assert decode_strictly([good, refused]) is None  # each is then decided on its own


def test_a_naive_time_is_refused_by_the_struct_and_read_as_utc_by_the_catalog() -> None:
    body = as_dict(tokens_event(prompt_tokens=5))
    body["occurred_at"] = "2026-11-01T00:30:00"
    value = json.dumps(body).encode()
    with pytest.raises(msgspec.ValidationError):
        TOKENS_CONSUMED_DECODER.decode(value)

    event = decode_tokens_consumed(value)

    assert event is not None
    assert event.occurred_at == datetime(2026, 11, 1, 0, 30, tzinfo=UTC)


async def test_metering_sums_per_bucket_of_the_events_own_utc_hour_and_per_day_and_month(
    usage: UsageService,
) -> None:
    now = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    late = now - timedelta(hours=1)  # yesterday, and last month
    user = uuid.uuid4()
    first = tokens_event(at=now, user=user, prompt_tokens=10, completion_tokens=5)
    tenant = first.tenant_id
    assert tenant is not None
    events = [
        first,
        first.model_copy(update={"id": uuid.uuid4(), "occurred_at": late}),
        # The same instant spelled in another zone: still 00:xx UTC on November 1st.
        first.model_copy(
            update={
                "id": uuid.uuid4(),
                "occurred_at": now.astimezone(timezone(timedelta(hours=5, minutes=30))),
            }
        ),
        first,  # redelivered in the same batch: counted once
        first.model_copy(
            update={
                "id": uuid.uuid4(),
                "data": first.data.model_copy(
                    update={
                        "user_id": None,
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                        "embedding_tokens": 40,
                    }
                ),
            }
        ),
        first.model_copy(
            update={
                "id": uuid.uuid4(),
                "data": first.data.model_copy(update={"prompt_tokens": 0, "completion_tokens": -3}),
            }
        ),  # claimed, but nothing to count
    ]

    async with usage.runtime.database.transaction() as session:
        new, touched = await MeteringRepository(session).meter_tokens([record(e) for e in events])
    async with usage.runtime.database.transaction() as session:
        again = await MeteringRepository(session).meter_tokens([record(e) for e in events])
        buckets = (
            await session.execute(
                select(
                    UsageBucket.hour,
                    UsageBucket.user_id,
                    UsageBucket.prompt_tokens,
                    UsageBucket.completion_tokens,
                    UsageBucket.embedding_tokens,
                    UsageBucket.events,
                ).where(UsageBucket.tenant_id == tenant)
            )
        ).all()
        periods = (
            await session.execute(
                select(
                    TenantPeriodUsage.period, TenantPeriodUsage.starts_on, TenantPeriodUsage.tokens
                ).where(TenantPeriodUsage.tenant_id == tenant)
            )
        ).all()

    assert (new, touched) == (5, {tenant})
    assert again == (0, set())  # a replay changes nothing
    hour = now.replace(minute=0)
    assert sorted(tuple(row) for row in buckets) == [
        (late.replace(minute=0), user, 10, 5, 0, 1),
        (hour, uuid.UUID(NIL_USER), 0, 0, 40, 1),
        (hour, user, 20, 10, 0, 2),
    ]
    # The day and month totals (what the plan's token limits count) are the LLM's tokens: the
    # 40 embedding tokens are in their bucket only.
    assert sorted(tuple(row) for row in periods) == [
        ("day", date(2026, 10, 31), 15),
        ("day", date(2026, 11, 1), 30),
        ("month", date(2026, 10, 1), 15),
        ("month", date(2026, 11, 1), 30),
    ]
