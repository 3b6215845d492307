"""OpenTelemetry tracing: one trace from the HTTP request through the outbox and Kafka to the
consumer handler.

The tracer provider is process-wide; an OTLP exporter is added when an endpoint is configured.
Tests (and operators without a collector) can attach their own span processor.

Spans are recorded only once something takes them (an exporter or a processor): until then
every span is a non-recording one that still carries its trace id, so the trace context crosses
requests, the outbox and Kafka, and log lines keep their ``trace_id``, at a fraction of the cost
(a recorded span per request, SQL-free publish and consumed message is a good part of a small
request's CPU). The sampled flag then goes out unset: a trace that nothing records is not sampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

_provider: TracerProvider | None = None
_exporting_to: set[str] = set()


class RecordedWhenTaken(Sampler):
    """``sampler``'s decision once spans are taken somewhere (:meth:`taken`); until then none is
    recorded (see the module's docstring)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.recording = False

    def taken(self) -> None:
        self.recording = True

    def should_sample(  # noqa: PLR0917 - the Sampler interface's signature
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.recording:
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RecordedWhenTaken{{{self.sampler.get_description()}}}"


_sampler: RecordedWhenTaken | None = None


def configure_tracing(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    sample_ratio: float = 1.0,
) -> TracerProvider:
    """Install the process's tracer provider once; later calls only add exporters."""
    global _provider, _sampler  # noqa: PLW0603 - one tracer provider per process, by design
    if _provider is None:
        _sampler = RecordedWhenTaken(ParentBased(TraceIdRatioBased(sample_ratio)))
        _provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service_name, "service.namespace": "docuchat"}
            ),
            sampler=_sampler,
        )
        trace.set_tracer_provider(_provider)
    if otlp_endpoint and otlp_endpoint not in _exporting_to:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        _exporting_to.add(otlp_endpoint)
    return _provider


# Query parameters that carry credentials (a browser's stream sends its access token so).
SECRET_QUERY_PARAMETERS = frozenset({"access_token"})


def redact_query(query: str) -> str:
    """``query`` with the values of credential parameters replaced, the rest kept."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name in SECRET_QUERY_PARAMETERS for name, _ in pairs):
        return query
    return urlencode(
        [(name, "REDACTED" if name in SECRET_QUERY_PARAMETERS else v) for name, v in pairs]
    )


def redact_server_span(span: trace.Span, scope: dict[str, Any]) -> None:
    """A server request hook: the span's URL attributes never hold a credential. The ASGI
    instrumentation only redacts a few cloud signature parameters of its own."""
    raw = scope.get("query_string", b"")
    query = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    redacted = redact_query(query)
    if redacted == query or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    url = attributes.get("http.url")
    if isinstance(url, str):
        span.set_attribute("http.url", url.partition("?")[0] + "?" + redacted)
    if "url.query" in attributes:
        span.set_attribute("url.query", redacted)


def add_span_processor(processor: SpanProcessor) -> None:
    if _provider is None or _sampler is None:
        raise RuntimeError("configure_tracing() first")
    _provider.add_span_processor(processor)
    _sampler.taken()


def current_trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, to store beside an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def attach_trace_headers(headers: Mapping[str, str]) -> object:
    """Make the stored trace context current; returns a token for :func:`detach`."""
    return otel_context.attach(propagate.extract(dict(headers)))


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]
