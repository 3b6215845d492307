"""Traces never carry a credential (a browser's stream sends its access token in the URL), and
spans are recorded only once something takes them."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import APIRouter
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData

from docuchat_common.events.tables import outbox_table, processed_events_table
from docuchat_common.service import ServiceRuntime
from docuchat_common.settings import ServiceSettings
from docuchat_common.telemetry import (
    RecordedWhenTaken,
    add_span_processor,
    configure_tracing,
    redact_query,
)

SECRET = "eyJhbGciOiJSUzI1NiJ9.secret-claims.secret-signature"


def test_only_credential_parameters_are_redacted() -> None:
    assert redact_query(f"limit=5&access_token={SECRET}&cursor=") == (
        "limit=5&access_token=REDACTED&cursor="
    )
    assert redact_query("limit=5&cursor=abc") == "limit=5&cursor=abc"
    assert redact_query("") == ""


async def test_a_services_request_span_keeps_the_url_but_not_the_token() -> None:
    configure_tracing("docuchat")
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    router = APIRouter()

    @router.get("/api/v1/documents/{document_id}/events")
    async def events(document_id: str) -> dict[str, str]:
        return {"document_id": document_id}

    settings = ServiceSettings(
        environment="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        kafka_bootstrap_servers="127.0.0.1:9",
    )
    metadata = MetaData()
    outbox_table(metadata)
    processed_events_table(metadata)
    # Never started: the request needs neither the database nor the broker.
    runtime = ServiceRuntime(
        name="demo",
        settings=settings,
        metadata=metadata,
        migrations_dir=Path("."),
        routers=[router],
    )
    transport = httpx.ASGITransport(app=runtime.create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        response = await client.get(f"/api/v1/documents/d1/events?access_token={SECRET}&limit=5")
    assert response.status_code == 200

    servers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    attributes = dict(servers[0].attributes or {})
    assert SECRET not in repr(attributes)
    assert str(attributes["http.url"]).endswith(
        "/api/v1/documents/d1/events?access_token=REDACTED&limit=5"
    )


def test_spans_are_recorded_only_once_taken_and_the_trace_id_crosses_either_way() -> None:
    sampler = RecordedWhenTaken(ALWAYS_ON)
    provider = TracerProvider(sampler=sampler)
    tracer = provider.get_tracer("test")
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    incoming = propagate.extract({"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})

    # Nothing takes spans yet (no exporter): the span records nothing, but it continues the
    # caller's trace and hands its id on (to an outbox row's headers, to Kafka, to logs).
    with tracer.start_as_current_span("request", context=incoming) as span:
        assert not span.is_recording()
        assert format(span.get_span_context().trace_id, "032x") == caller_trace
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert carrier["traceparent"].split("-")[1] == caller_trace

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sampler.taken()
    with tracer.start_as_current_span("request", context=incoming) as span:
        assert span.is_recording()
    (finished,) = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == caller_trace
