"""The event catalog: every integration event DocuChat publishes, typed and versioned.

Types are past tense ``<entity>.<verb-ed>``. Changes are additive (new optional fields); a
breaking change is a new class with the next ``version``, published beside the old one until
every consumer has moved. ``docuchat docs`` exports this catalog as AsyncAPI + JSON Schema.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from docuchat_common.events.envelope import Event, EventData, UnknownEvent
from docuchat_common.events.topics import (
    DOCUMENTS,
    KNOWLEDGE_BASES,
    MESSAGES,
    QUOTA,
    TENANTS,
    TOKENS,
    USERS,
)

# --- auth -------------------------------------------------------------------------------------


class TenantCreatedData(EventData):
    tenant_id: uuid.UUID
    name: str
    owner_user_id: uuid.UUID
    plan: str = "free"


class TenantCreated(Event[TenantCreatedData]):
    """A tenant registered. Usage subscribes it to its plan; ingest creates its default
    knowledge base."""

    topic = TENANTS
    type: Literal["tenant.created"] = "tenant.created"
    version: Literal[1] = 1


class TenantDeletedData(EventData):
    tenant_id: uuid.UUID


class TenantDeleted(Event[TenantDeletedData]):
    """A tenant was deleted: every service purges everything it holds for it."""

    topic = TENANTS
    type: Literal["tenant.deleted"] = "tenant.deleted"
    version: Literal[1] = 1


class UserCreatedData(EventData):
    user_id: uuid.UUID
    role: str


class UserCreated(Event[UserCreatedData]):
    topic = USERS
    type: Literal["user.created"] = "user.created"
    version: Literal[1] = 1


class UserDeletedData(EventData):
    user_id: uuid.UUID


class UserDeleted(Event[UserDeletedData]):
    """A user was deleted: services purge that user's data (sessions, messages)."""

    topic = USERS
    type: Literal["user.deleted"] = "user.deleted"
    version: Literal[1] = 1


# --- ingest -----------------------------------------------------------------------------------


class DocumentUploadedData(EventData):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    user_id: uuid.UUID | None = None
    filename: str
    media_type: str
    size_bytes: int
    content_hash: str


class DocumentUploaded(Event[DocumentUploadedData]):
    """A file was accepted and stored; ingest workers parse, chunk and index it."""

    topic = DOCUMENTS
    type: Literal["document.uploaded"] = "document.uploaded"
    version: Literal[1] = 1


class DocumentProgressedData(EventData):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    status: str
    progress: float = Field(ge=0, le=1)
    pages: int | None = None
    chunks: int | None = None


class DocumentProgressed(Event[DocumentProgressedData]):
    topic = DOCUMENTS
    type: Literal["document.progressed"] = "document.progressed"
    version: Literal[1] = 1


class DocumentIndexedData(EventData):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    user_id: uuid.UUID | None = None
    pages: int
    chunks: int
    size_bytes: int
    embedding_tokens: int
    embedding_model: str


class DocumentIndexed(Event[DocumentIndexedData]):
    """A document is searchable. Usage counts documents and storage from it."""

    topic = DOCUMENTS
    type: Literal["document.indexed"] = "document.indexed"
    version: Literal[1] = 1


class DocumentFailedData(EventData):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    code: str
    error: str


class DocumentFailed(Event[DocumentFailedData]):
    topic = DOCUMENTS
    type: Literal["document.failed"] = "document.failed"
    version: Literal[1] = 1


class DocumentDeletedData(EventData):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    size_bytes: int
    was_indexed: bool


class DocumentDeleted(Event[DocumentDeletedData]):
    topic = DOCUMENTS
    type: Literal["document.deleted"] = "document.deleted"
    version: Literal[1] = 1


class KnowledgeBaseDeletedData(EventData):
    knowledge_base_id: uuid.UUID
    name: str
    documents: int = Field(
        description="How many documents went with it (each has its own document.deleted)"
    )


class KnowledgeBaseDeleted(Event[KnowledgeBaseDeletedData]):
    """A knowledge base was deleted, its documents with it. Chat deletes its sessions."""

    topic = KNOWLEDGE_BASES
    type: Literal["knowledge_base.deleted"] = "knowledge_base.deleted"
    version: Literal[1] = 1


# --- metering ---------------------------------------------------------------------------------


class TokensConsumedData(EventData):
    user_id: uuid.UUID | None = None
    kind: Literal["chat", "embedding"]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    reference: str | None = Field(
        default=None, description="What spent them: a message id or a document id"
    )


class TokensConsumed(Event[TokensConsumedData]):
    """Tokens spent on an LLM call (chat) or on embeddings (ingest); usage meters them."""

    topic = TOKENS
    type: Literal["tokens.consumed"] = "tokens.consumed"
    version: Literal[1] = 1


class MessageCompletedData(EventData):
    session_id: uuid.UUID
    message_id: uuid.UUID
    user_id: uuid.UUID | None = None
    knowledge_base_id: uuid.UUID | None = None
    grounded: bool
    citations: int
    complete: bool = True
    prompt_tokens: int = 0
    completion_tokens: int = 0


class MessageCompleted(Event[MessageCompletedData]):
    topic = MESSAGES
    type: Literal["message.completed"] = "message.completed"
    version: Literal[1] = 1


class QuotaLimitState(EventData):
    used: int
    limit: int | None = Field(description="None: unlimited")
    remaining: int | None
    resets_at: datetime | None = None


class QuotaChangedData(EventData):
    """``limits`` holds the metered limits (``daily_tokens``, ``monthly_tokens``, ``documents``,
    ``storage_bytes``); the plan's fixed limits ride along so enforcers need no other source."""

    plan: str
    limits: dict[str, QuotaLimitState]
    exceeded: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    max_file_bytes: int | None = None
    knowledge_bases: int | None = None
    requests_per_minute: int | None = None
    allowed_models: list[str] = Field(default_factory=lambda: ["*"])


class QuotaChanged(Event[QuotaChangedData]):
    """The tenant's quota state. Compacted topic keyed by tenant: the latest per tenant is the
    state chat and ingest enforce."""

    topic = QUOTA
    type: Literal["quota.changed"] = "quota.changed"
    version: Literal[1] = 1


CATALOG: tuple[type[Event[Any]], ...] = (
    TenantCreated,
    TenantDeleted,
    UserCreated,
    UserDeleted,
    DocumentUploaded,
    DocumentProgressed,
    DocumentIndexed,
    DocumentFailed,
    DocumentDeleted,
    KnowledgeBaseDeleted,
    TokensConsumed,
    MessageCompleted,
    QuotaChanged,
)


def _tag(model: type[Event[Any]]) -> str:
    fields = model.model_fields
    return f"{fields['type'].default}@{fields['version'].default}"


def _discriminate(known: frozenset[str]) -> Any:
    def discriminator(value: Any) -> str:
        if isinstance(value, dict):
            tag = f"{value.get('type')}@{value.get('version')}"
        else:
            tag = f"{getattr(value, 'type', None)}@{getattr(value, 'version', None)}"
        return tag if tag in known else "unknown"

    return discriminator


def event_union(*models: type[Event[Any]]) -> Any:
    """A pydantic union of the given events, tolerant of types it does not know.

    Use it as the body annotation of a consumer: FastStream validates against it and documents
    it in AsyncAPI; a type added later by a producer arrives as :class:`UnknownEvent`.
    """
    tags = frozenset(_tag(m) for m in models)
    members = (
        *(Annotated[m, Tag(_tag(m))] for m in models),
        Annotated[UnknownEvent, Tag("unknown")],
    )
    return Annotated[_union(members), Discriminator(_discriminate(tags))]


def _union(members: tuple[Any, ...]) -> Any:
    from typing import Union

    return Union[members]  # noqa: UP007 - built at run time from a tuple


def events_on(topic_name: str) -> tuple[type[Event[Any]], ...]:
    return tuple(m for m in CATALOG if m.topic.name == topic_name)
