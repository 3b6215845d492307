"""A batch of token events splits into lanes by tenant: one tenant's events (however its id is
spelled) stay in one lane and in their order, so the lanes' transactions never touch the same
rows, and the lanes come out about the same size whatever partitions the batch came from."""

from __future__ import annotations

import uuid
from typing import Any

from docuchat_common.events.catalog import TokensConsumed, TokensConsumedData
from docuchat_usage.metering.consumers import Batch
from docuchat_usage.metering.schemas import TOKENS_CONSUMED_DECODER, TokensConsumedRecord


def record(tenant: uuid.UUID | None, *, upper: bool = False) -> TokensConsumedRecord:
    event = TokensConsumed(
        tenant_id=tenant,
        source="chat",
        data=TokensConsumedData(kind="chat", model="m", prompt_tokens=1),
    )
    body = event.model_dump_json()
    if upper and tenant is not None:
        body = body.replace(str(tenant), str(tenant).upper())
    return TOKENS_CONSUMED_DECODER.decode(body.encode())


def test_lanes_keep_each_tenant_whole_and_in_order() -> None:
    tenants = [uuid.uuid4() for _ in range(200)]
    events = [record(t, upper=i % 3 == 0) for i, t in enumerate(tenants * 5)] + [record(None)]
    sources: list[Any] = [object() for _ in events]  # stand-ins for the Kafka records

    lanes = Batch(events, sources).lanes(2)

    assert len(lanes) == 2
    assert all(len(lane.events) > len(events) / 4 for lane in lanes)  # about even
    seen_in: dict[str, int] = {}
    for number, lane in enumerate(lanes):
        assert lane.events == [e for e in events if e in lane.events]  # the batch's order
        for event, source in zip(lane.events, lane.records, strict=True):
            assert source is sources[events.index(event)]  # each event beside its record
            tenant = (event.tenant_id or "").lower()
            assert seen_in.setdefault(tenant, number) == number  # one tenant, one lane
    assert sum(len(lane.events) for lane in lanes) == len(events)


def test_one_lane_or_an_empty_batch() -> None:
    events = [record(uuid.uuid4()) for _ in range(3)]
    sources: list[Any] = [object() for _ in events]
    batch = Batch(events, sources)

    assert batch.lanes(1) == [batch]
    assert Batch([], []).lanes(2) == []
