"""The one envelope every event travels in.

``id, type, version, occurred_at, tenant_id, source, correlation_id, data``. The Kafka message
key is the tenant id (per-tenant ordering); W3C trace context and the correlation id also travel
in Kafka headers so tools that never parse the body can follow a flow.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from uuid_utils.compat import uuid7

from docuchat_common.context import current_correlation_id
from docuchat_common.events.topics import Topic

DataT = TypeVar("DataT", bound=BaseModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventData(BaseModel):
    """Base for event payloads. Unknown fields are kept: changes are additive, and a consumer
    built against an older version must still accept a newer producer's messages."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Event(BaseModel, Generic[DataT]):
    """An integration event. Subclasses pin ``type`` and ``version`` with ``Literal`` and name
    their Kafka topic in ``topic``."""

    model_config = ConfigDict(frozen=True)

    topic: ClassVar[Topic]

    # UUIDv7: time-ordered, so consumers' claims (and any index of event ids) grow at one end.
    id: uuid.UUID = Field(default_factory=uuid7)
    type: str
    version: int
    occurred_at: datetime = Field(default_factory=utcnow)
    tenant_id: uuid.UUID | None
    source: str
    correlation_id: str | None = Field(default_factory=current_correlation_id)
    data: DataT

    @property
    def key(self) -> bytes | None:
        return str(self.tenant_id).encode() if self.tenant_id else None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class UnknownEvent(Event[EventData]):
    """A type (or version) this consumer was not built for. Consumers skip it: producers may add
    event types to a topic at any time."""

    type: str
    version: int
