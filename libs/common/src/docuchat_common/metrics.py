"""Prometheus metrics, defined once per process.

Several services may share a process (``--target all``), so every metric carries a ``service``
label instead of each service registering its own copy.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

registry: CollectorRegistry = REGISTRY

HTTP_REQUESTS = Counter(
    "docuchat_http_requests_total",
    "HTTP requests handled, by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "docuchat_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_IN_FLIGHT = Gauge(
    "docuchat_http_requests_in_flight", "HTTP requests being handled.", ["service"]
)
CONSUMER_MESSAGES = Counter(
    "docuchat_consumer_messages_total",
    "Messages handled by consumers, by outcome (ok, duplicate, ignored, retried, dead_lettered).",
    ["service", "topic", "group", "outcome"],
)
CONSUMER_ERRORS = Counter(
    "docuchat_consumer_errors_total",
    "Handler attempts that raised.",
    ["service", "topic", "group"],
)
CONSUMER_HELD = Gauge(
    "docuchat_consumer_held_messages",
    "Messages a consumer holds because its database is unreachable (handled once it answers).",
    ["service", "group"],
)
CONSUMER_IN_FLIGHT = Gauge(
    "docuchat_consumer_in_flight",
    "Events a windowed consumer (ingest-worker's documents) is handling, and those it has read "
    "and waits to start (state: running | waiting).",
    ["service", "group", "state"],
)
CONSUMER_LATENCY = Histogram(
    "docuchat_consumer_handle_seconds",
    "Time to handle one message (all attempts).",
    ["service", "topic", "group"],
)
CONSUMER_LAG = Gauge(
    "docuchat_consumer_lag_messages",
    "Messages behind the partition's high watermark, per consumer group.",
    ["service", "topic", "group", "partition"],
)
OUTBOX_PENDING = Gauge(
    "docuchat_outbox_pending_events", "Outbox rows not yet published.", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "docuchat_outbox_published_total", "Outbox rows published to Kafka.", ["service"]
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "docuchat_outbox_publish_errors_total", "Failed outbox publish attempts.", ["service"]
)


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
