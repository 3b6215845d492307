"""The LLM adapter for OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama...).

Retries use tenacity rather than the openai client's own (the client is built with
``max_retries=0``): the client has no total time budget (each retry may wait up to 60 s of
Retry-After), while a chat request must answer or fail within ``budget`` seconds; tenacity's
``stop_before_delay`` refuses a wait that would end past the budget, and each attempt's HTTP
timeouts are capped by what is left of it. Waits are full-jitter exponential
(``wait_random_exponential``), or the provider's Retry-After when it sends one. Only the start of
a call is retried: for a stream, everything up to the first text delta; once a delta has been
yielded, a failure is raised, never replayed. ``complete()`` streams too and joins the deltas,
so its timeouts also bound the silence between tokens, not the whole answer, and streamed and
whole answers behave alike.

Failures map to :class:`ProviderError`:

=====================================================  ======  ====================
provider outcome (after retries)                       status  code
=====================================================  ======  ====================
timeout (connect or read)                              504     llm_timeout
429                                                    503     llm_rate_limited (+retry_after)
connection refused/reset, 502/503/504, breaker open    503     llm_unavailable
other 5xx, malformed answer, 4xx other than below      502     llm_error
401/403 (e.g. a tenant's bad BYOK key)                 502     llm_auth_failed
=====================================================  ======  ====================

The circuit breaker (one per endpoint, shared by every tenant using it; see
:class:`EndpointBreakers`) counts failed *calls*, i.e. after retries, and only failures that
say something about the endpoint: a tenant's rejected key or a bad request does not open it
for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import httpx2
import openai
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from docuchat_common.errors import retry_after_seconds
from docuchat_common.logging import get_logger

from .port import ChatMessage, Completion, LLMRequest, ProviderError, Usage
from .tokens import TokenCounter

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

__all__ = ["EndpointBreakers", "EndpointFailure", "OpenAICompatProvider", "RetryPolicy"]

log = get_logger(__name__)
T = TypeVar("T")

_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # longest silence between two bytes of the answer
    max_retries: int = 2
    budget: float = 30.0  # seconds from the call to the first delta, retries and waits included
    backoff_initial: float = 0.5
    backoff_max: float = 8.0


class EndpointFailure(ProviderError):
    """A :class:`ProviderError` that counts against the endpoint's circuit breaker."""


class EndpointBreakers:
    """One circuit breaker per endpoint (base URL), from ``purgatory``.

    After ``threshold`` consecutive failed calls a breaker opens: calls fail at once with 503
    ``llm_unavailable`` for ``cooldown`` seconds; then it is half-open, and the next call's
    outcome closes it or opens it again. purgatory's half-open state lets every concurrent call
    through (not just one trial), and a call cancelled by its client counts as a success; both
    are acceptable here, where calls are short and a cancelled call says the endpoint was up.
    """

    def __init__(self, *, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=cooldown,
            exclude=[
                (ProviderError, lambda exc: not isinstance(exc, EndpointFailure)),
                asyncio.CancelledError,
            ],
        )

    async def call(self, endpoint: str, attempt: Callable[[], Awaitable[T]]) -> T:
        breaker = await self._factory.get_breaker(endpoint)
        try:
            async with breaker:
                return await attempt()
        except OpenedState as opened:
            reopens_in = max(0.0, opened.opened_at + self.cooldown - time.time())
            raise ProviderError(
                "The language model endpoint is failing; calls are paused for a moment.",
                code="llm_unavailable",
                status=503,
                retry_after=round(reopens_in, 3),
            ) from opened

    async def state(self, endpoint: str) -> str:
        """``closed``, ``opened`` or ``half-opened``, as last recorded (an open breaker turns
        half-open on the first call after its cool-down)."""
        breaker = await self._factory.get_breaker(endpoint)
        return breaker.context.state


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms``, ``retry-after`` in seconds or
    as an HTTP date), when it did."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def provider_error(exc: Exception) -> ProviderError:
    """The :class:`ProviderError` the chat API answers for an openai client exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APITimeoutError):
        return _timed_out()
    if isinstance(exc, openai.APIConnectionError):
        return EndpointFailure(
            "The language model endpoint cannot be reached.", code="llm_unavailable", status=503
        )
    return EndpointFailure(
        f"The language model answer could not be read ({type(exc).__name__}).",
        code="llm_error",
        status=502,
    )


def _timed_out() -> ProviderError:
    return EndpointFailure(
        "The language model did not answer in time.", code="llm_timeout", status=504
    )


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    if status in (401, 403):
        return ProviderError(
            f"The language model provider rejected the API key (HTTP {status}).",
            code="llm_auth_failed",
            status=502,
        )
    if status == 429:
        return EndpointFailure(
            "The language model provider is rate limiting requests.",
            code="llm_rate_limited",
            status=503,
            retry_after=_retry_after(exc),
        )
    if status == 408:
        return _timed_out()
    if status in _UNAVAILABLE_STATUSES:
        return EndpointFailure(
            f"The language model endpoint is unavailable (HTTP {status}).",
            code="llm_unavailable",
            status=503,
        )
    failure = EndpointFailure if status >= 500 else ProviderError
    return failure(
        f"The language model provider answered with an error (HTTP {status}).",
        code="llm_error",
        status=502,
    )


def _messages(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    return [{"role": m.role, "content": m.content} for m in messages]  # type: ignore[misc]


async def _next(stream: openai.AsyncStream[ChatCompletionChunk]) -> ChatCompletionChunk | None:
    """The next chunk, or None at the end (one iterator for the whole stream: ``async for``
    would start a new wrapper generator each time and leave the previous one dangling)."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


@dataclass(slots=True)
class _OpenedStream:
    """A stream whose first delta has arrived (or that ended without one)."""

    stream: openai.AsyncStream[ChatCompletionChunk]
    head: list[ChatCompletionChunk]


class OpenAICompatProvider:
    """:class:`~docuchat_chat.llm.port.LLMProvider` over the openai package's ``AsyncOpenAI``.

    The client (built with ``max_retries=0``) and the breakers are shared: the registry gives
    every provider of one endpoint the same :class:`EndpointBreakers` and every provider of
    one (endpoint, key) the same client.
    """

    def __init__(
        self,
        *,
        client: AsyncOpenAI,
        model: str,
        breakers: EndpointBreakers,
        token_counter: TokenCounter,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._breakers = breakers
        self._counter = token_counter
        self.policy = policy or RetryPolicy()
        self.endpoint = str(client.base_url).rstrip("/")

    @property
    def model(self) -> str:
        return self._model

    # -- calls ------------------------------------------------------------------------------------

    def stream(self, request: LLMRequest) -> AsyncIterator[str | Usage]:
        return self._stream(request, [None])

    async def complete(self, request: LLMRequest) -> Completion:
        """The streamed answer joined: the same retries, and timeouts that bound the silence
        between tokens rather than the whole answer (a slow local model may take minutes)."""
        parts: list[str] = []
        usage: Usage | None = None
        finish: list[str | None] = [None]
        async with contextlib.aclosing(self._stream(request, finish)) as items:
            async for item in items:
                if isinstance(item, Usage):
                    usage = item
                else:
                    parts.append(item)
        assert usage is not None  # _stream always ends with one
        return Completion("".join(parts), usage, finish[0])

    async def _stream(
        self, request: LLMRequest, finish: list[str | None]
    ) -> AsyncGenerator[str | Usage, None]:
        """Text deltas then one Usage; ``finish[0]`` receives the finish reason."""
        opened = await self._call(lambda timeout: self._open_stream(request, timeout))
        parts: list[str] = []
        usage: Usage | None = None

        def take(chunk: ChatCompletionChunk) -> list[str]:
            nonlocal usage
            usage = self._usage(chunk) or usage
            for choice in chunk.choices:
                finish[0] = choice.finish_reason or finish[0]
            texts = self._texts(chunk)
            parts.extend(texts)
            return texts

        try:
            for early in opened.head:
                for text in take(early):
                    yield text
            try:
                while (chunk := await _next(opened.stream)) is not None:
                    for text in take(chunk):
                        yield text
            except openai.OpenAIError as exc:  # after deltas went out: report, never replay
                raise provider_error(exc) from exc
        finally:
            # Closing the response drops the connection, which stops generation upstream.
            await opened.stream.close()
        yield usage or self._counter.usage(request.messages, "".join(parts), self._model)

    # -- internals --------------------------------------------------------------------------------

    async def _call(self, attempt: Callable[[httpx2.Timeout], Awaitable[T]]) -> T:
        """``attempt`` with retries within the budget, behind the endpoint's breaker."""
        policy = self.policy
        deadline = time.monotonic() + policy.budget

        backoff = wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = _retry_after(exc) if exc is not None else None
            if asked is not None:
                return asked
            return backoff(state)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "llm call failed; retrying",
                endpoint=self.endpoint,
                model=self._model,
                attempt=state.attempt_number,
                error=type(exc).__name__,
                status=getattr(exc, "status_code", None),
                wait_seconds=round(state.upcoming_sleep, 3),
            )

        async def with_retries() -> T:
            try:
                async for attempt_state in AsyncRetrying(
                    retry=retry_if_exception(_retryable),
                    stop=stop_after_attempt(policy.max_retries + 1)
                    | stop_before_delay(policy.budget),
                    wait=wait,
                    before_sleep=before_sleep,
                    reraise=True,
                ):
                    with attempt_state:
                        remaining = max(0.001, deadline - time.monotonic())
                        # The HTTP timeouts outlive this attempt (they bound the silences of
                        # the whole stream); the budget bounds the attempt itself.
                        timeout = httpx2.Timeout(
                            policy.read_timeout, connect=min(policy.connect_timeout, remaining)
                        )
                        try:
                            async with asyncio.timeout(remaining):
                                return await attempt(timeout)
                        except TimeoutError as exc:  # only asyncio.timeout raises it bare
                            raise _timed_out() from exc
            except openai.OpenAIError as exc:
                raise provider_error(exc) from exc
            raise AssertionError("unreachable: tenacity reraises the last failure")

        return await self._breakers.call(self.endpoint, with_retries)

    async def _open_stream(
        self, request: LLMRequest, http_timeout: httpx2.Timeout
    ) -> _OpenedStream:
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=_messages(request.messages),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream=True,
            stream_options={"include_usage": True},
            timeout=http_timeout,
        )
        head: list[ChatCompletionChunk] = []
        try:
            # Read up to the first text: a failure until then is retried as a whole.
            while (chunk := await _next(stream)) is not None:
                head.append(chunk)
                if self._texts(chunk):
                    break
        except BaseException:
            await stream.close()
            raise
        return _OpenedStream(stream, head)

    @staticmethod
    def _texts(chunk: ChatCompletionChunk) -> list[str]:
        return [c.delta.content for c in chunk.choices if c.delta and c.delta.content]

    @staticmethod
    def _usage(chunk: ChatCompletionChunk) -> Usage | None:
        if chunk.usage is None:
            return None
        return Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
