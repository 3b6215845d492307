"""The LLM port: what the answering code asks of a language model, whoever serves it.

Adapters (``openai_compat`` for OpenAI and any OpenAI-compatible server, ``extractive`` for
answers made of the retrieved passages without a model) implement :class:`LLMProvider`.
A provider failure is a :class:`ProviderError` carrying the HTTP status and stable ``code``
the chat API answers with; a failed call is never charged.

Metering: meter ``Usage`` only when ``usage.metered`` (the extractive provider runs no model
and meters 0). A stream closed early (client gone) never yields its final ``Usage``: count what
was generated with ``TokenCounter.usage(request.messages, partial_text, provider.model)``
(:mod:`docuchat_chat.llm.tokens`; ``reported=False``) and meter it unless the provider is of
kind ``extractive``. ``ProviderRegistry`` (:mod:`docuchat_chat.llm.registry`) builds providers
from a :class:`ProviderConfig` and owns the shared clients, breakers and token counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A numbered context passage as the prompt shows it (``[number] text``)."""

    number: int
    text: str


@dataclass(frozen=True, slots=True)
class LLMRequest:
    messages: Sequence[ChatMessage]
    # The passages inside the prompt, for providers that answer from them directly.
    passages: Sequence[Passage] = field(default_factory=tuple)
    max_tokens: int = 512
    temperature: float = 0.2


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # True when the provider reported the counts; False when we counted them (tiktoken).
    reported: bool = True
    # False when no provider spent anything (the extractive provider): store the counts, meter 0.
    metered: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str | None = None


class ProviderError(Exception):
    """The provider could not answer. ``status``/``code`` are what the API returns."""

    def __init__(
        self,
        message: str,
        *,
        code: Literal[
            "llm_timeout", "llm_unavailable", "llm_rate_limited", "llm_error", "llm_auth_failed"
        ],
        status: int = 502,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class LLMProvider(Protocol):
    """One configured model endpoint."""

    @property
    def model(self) -> str: ...

    def stream(self, request: LLMRequest) -> AsyncIterator[str | Usage]:
        """Yield text deltas as they arrive, then exactly one final :class:`Usage`.

        Closing the iterator early (``aclose()``, e.g. the client disconnected) stops the
        generation upstream. Raises :class:`ProviderError` before the first delta when the call
        fails (after the adapter's own retries); a failure after some deltas also raises it.
        """
        ...

    async def complete(self, request: LLMRequest) -> Completion:
        """The whole answer at once (same retries and errors as :meth:`stream`)."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """How to reach a model: from settings (the default) or a tenant's LLM settings (BYOK)."""

    kind: Literal["openai", "extractive"]
    model: str
    base_url: str | None = None
    api_key: str | None = None
