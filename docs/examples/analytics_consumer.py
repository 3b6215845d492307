"""An analytics consumer: reads token usage and quota changes from Kafka, as a BI job would.

It needs nothing from DocuChat but the event documentation (``make docs`` writes the AsyncAPI
document and one JSON Schema per event to docs/events/): plain aiokafka, its own consumer
group, JSON envelopes. Run it beside ``make dev``:

    uv run python docs/examples/analytics_consumer.py --bootstrap 127.0.0.1:19092

Every message is an envelope: ``id, type, version, occurred_at, tenant_id, source,
correlation_id, data``. Dedupe on ``id`` (delivery is at least once), skip types and versions
you do not know (producers may add them), and key your state by ``tenant_id``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict

from aiokafka import AIOKafkaConsumer

TOPICS = ("docuchat.tokens", "docuchat.quota")


async def main(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    await consumer.start()
    seen: set[str] = set()
    tokens_by_tenant: dict[str, int] = defaultdict(int)
    try:
        async for record in consumer:
            try:
                event = json.loads(record.value)
            except ValueError:
                continue  # not an envelope: not ours to read
            if event.get("id") in seen:
                continue
            seen.add(event["id"])
            tenant, data = event.get("tenant_id"), event.get("data", {})
            if (event.get("type"), event.get("version")) == ("tokens.consumed", 1):
                spent = data["prompt_tokens"] + data["completion_tokens"] + data["embedding_tokens"]
                tokens_by_tenant[tenant] += spent
                total = tokens_by_tenant[tenant]
                print(f"{event['occurred_at']} {tenant} {data['model']:<24} +{spent:>6} = {total}")
            elif (event.get("type"), event.get("version")) == ("quota.changed", 1):
                spent_limits, plan = data["exceeded"], data["plan"]
                print(f"{event['occurred_at']} {tenant} plan={plan} spent={spent_limits}")
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--group", default="analytics-example")
    args = parser.parse_args()
    asyncio.run(main(args.bootstrap, args.group))
