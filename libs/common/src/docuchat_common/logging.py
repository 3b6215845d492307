"""structlog configuration: JSON when not a TTY, context ids bound, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

_SECRET_KEYS = re.compile(
    r"(password|secret|token|api_key|apikey|authorization|cookie|private_key|otp|one_time_code)$",
    re.I,
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_DCK = re.compile(r"dck_[A-Za-z0-9_-]+")
# A browser's stream sends its token in the URL; uvicorn logs a WebSocket's URL as it accepts it.
_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s\"']+", re.I)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        value = _QUERY_TOKEN.sub(r"\1***", _BEARER.sub(r"\1***", value))
        return _DCK.sub("dck_***", value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Never let a credential reach a log line, whoever wrote the call."""
    for key in list(event_dict):
        if _SECRET_KEYS.search(key) and key not in ("event",):
            event_dict[key] = "***"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and route stdlib logging (uvicorn, aiokafka, alembic) through it."""
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        # A call below the level is dropped first, before any processor runs: debug lines on
        # hot paths (a skipped event per message) cost nothing in production.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "faststream.access.kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
