"""A fake OpenAI-compatible HTTP server for tests.

Tests never monkeypatch the LLM client: they point it at ``FakeOpenAI.base_url`` and talk real HTTP
to a Starlette app served by uvicorn in a background thread.

Endpoints: ``POST /v1/chat/completions`` (JSON, or SSE when ``stream: true``, honouring
``stream_options.include_usage``), ``POST /v1/embeddings`` and ``GET /v1/models``.

Deterministic rules tests can rely on:

- Tokens: one token per whitespace-separated word (``count_tokens``). ``prompt_tokens`` counts the
  text of every message, ``completion_tokens`` the reply; embeddings count every input (a token-id
  array counts one per id). A stream sends one chunk per word, with its surrounding whitespace, so
  the deltas join back into the reply exactly. ``max_tokens`` / ``max_completion_tokens`` truncate
  the reply to that many words with ``finish_reason: "length"``.
- Embeddings: SHAKE-256 of the input text spread over ``dim`` values in [-1, 1), L2-normalised and
  rounded to float32 (``fake_embedding``), so ``encoding_format`` "float" and "base64" (the
  client's default) decode to identical vectors. ``dimensions`` in the request overrides
  ``FakeOpenAI.embedding_dim``.
- Replies: ``FakeOpenAI.reply`` is a ``reply(messages) -> str`` function or a fixed string; the
  default (``default_reply``) answers ``CITED_ANSWER`` when the prompt contains a numbered passage
  ``[1]`` and ``NO_ANSWER`` otherwise.

Scripted faults (``Fault``) are queued and each is consumed by the next matching POST call. Every
request to ``/v1`` is recorded (``requests``) before any fault applies, so retries are visible.
A scripted break hangs up mid-body; uvicorn logs "ASGI callable returned without completing
response." for it, which is expected.

Client hang-ups: a chat stream the client closes before its last frame is counted in
``hangups`` (seen when uvicorn reports the disconnect, so poll for it), and ``frames_sent`` counts
every SSE frame written, so a test can tell that generation stopped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import socket
import threading
import time
import uuid
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

Message = dict[str, Any]
ReplyFn = Callable[[list[Message]], str]
Handler = Callable[[dict[str, Any], int | None], Response]

CITED_ANSWER = "According to the documents [1], this is the answer to your question."
NO_ANSWER = "I could not find the answer in the provided documents."
DEFAULT_MODELS = ("gpt-4o-mini", "text-embedding-3-small")
_WORD = re.compile(r"\s*\S+\s*")


def message_text(message: Message) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def default_reply(messages: list[Message]) -> str:
    prompt = "\n".join(map(message_text, messages))
    return CITED_ANSWER if "[1]" in prompt else NO_ANSWER


def count_tokens(text: str) -> int:
    return len(text.split())


def fake_embedding(text: str, dim: int) -> list[float]:
    raw = array("I", hashlib.shake_256(text.encode()).digest(4 * dim))
    vector = [value / 2**31 - 1.0 for value in raw]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return array("f", (v / norm for v in vector)).tolist()


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied in this order: delay, then status or break."""

    delay: float = 0.0  # hold the answer this long (client timeouts); ends early on hang-up
    status: int | None = None  # answer with this HTTP status and an OpenAI error body
    retry_after: float | None = None  # Retry-After header (seconds) sent with `status`
    message: str | None = None  # error message sent with `status`
    break_after: int | None = None  # stream this many words, then hang up (JSON: half the body)
    endpoint: str | None = None  # "chat/completions" or "embeddings"; None matches both


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None


class FakeOpenAI:
    """The fake server. ``reply``, ``token_delay`` (seconds between SSE chunks),
    ``report_usage`` (False: no ``usage`` in chat answers, as some servers do) and
    ``embedding_dim`` are plain attributes tests may set at any time; the server reads them
    atomically, and the fault queue and request log are guarded by a lock."""

    def __init__(self, *, embedding_dim: int = 384, models: Sequence[str] = DEFAULT_MODELS):
        self.models = tuple(models)
        self._default_dim = embedding_dim
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._socket is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already started")
        self._socket = socket.create_server(("127.0.0.1", 0))  # listening: the probe below queues
        config = uvicorn.Config(
            self._app(),
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        try:  # answers as soon as uvicorn serves the already-listening socket
            httpx.get(self.base_url.removesuffix("/v1") + "/healthz", timeout=10).raise_for_status()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- script ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the default behaviour, with no pending faults and no recorded requests."""
        with self._lock:
            self.reply: ReplyFn | str = default_reply
            self.token_delay = 0.0
            self.report_usage = True
            self.embedding_dim = self._default_dim
            self._faults: deque[Fault] = deque()
            self._requests: list[RecordedRequest] = []
            self._hangups = 0
            self._frames_sent = 0

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def fail(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        self.script(*[Fault(status=status, retry_after=retry_after, message=message)] * times)

    def rate_limit(self, retry_after: float = 1, *, times: int = 1) -> None:
        self.fail(429, times=times, retry_after=retry_after)

    def delay(self, seconds: float, *, times: int = 1) -> None:
        self.script(*[Fault(delay=seconds)] * times)

    def break_stream(self, after_words: int = 1, *, times: int = 1) -> None:
        self.script(*[Fault(break_after=after_words)] * times)

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def hangups(self) -> int:
        """Chat streams the client closed before their last frame."""
        with self._lock:
            return self._hangups

    @property
    def frames_sent(self) -> int:
        """SSE frames of chat streams written so far."""
        with self._lock:
            return self._frames_sent

    def _count_hangup(self) -> None:
        with self._lock:
            self._hangups += 1

    def _count_frame(self) -> None:
        with self._lock:
            self._frames_sent += 1

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/embeddings"]

    # -- HTTP ------------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", _healthz),
                self._route("GET", "/v1/models", self._models),
                self._route("POST", "/v1/chat/completions", self._chat, "model", "messages"),
                self._route("POST", "/v1/embeddings", self._embeddings, "model", "input"),
            ]
        )

    def _route(self, method: str, path: str, handler: Handler, *required: str) -> Route:
        endpoint = path.removeprefix("/v1/")

        async def serve(request: Request) -> Response:
            body = await request.json() if method == "POST" else {}
            with self._lock:
                self._requests.append(RecordedRequest(method, path, dict(request.headers), body))
                fault = self._take_fault(endpoint) if method == "POST" else None
            fault = fault or Fault()
            if fault.delay:
                await _hold(request, fault.delay)
            if fault.status is not None:
                return _error(fault.status, fault.message, fault.retry_after)
            if missing := [name for name in required if not body.get(name)]:
                return _error(400, f"Missing required parameter: '{missing[0]}'.")
            return handler(body, fault.break_after)

        return Route(path, serve, methods=[method])

    def _take_fault(self, endpoint: str) -> Fault | None:
        fault = next((f for f in self._faults if f.endpoint in (None, endpoint)), None)
        if fault is not None:
            self._faults.remove(fault)
        return fault

    def _models(self, _body: dict[str, Any], _break_after: int | None) -> Response:
        models = [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
        ]
        return JSONResponse({"object": "list", "data": models})

    def _chat(self, body: dict[str, Any], break_after: int | None) -> Response:
        messages: list[Message] = body["messages"]
        reply = self.reply
        words = _WORD.findall(reply(messages) if callable(reply) else reply)
        finish_reason = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and len(words) > limit:
            words, finish_reason = words[:limit], "length"
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        usage = _usage(prompt_tokens, len(words))
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body["model"],
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(words), "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None}
            return _json(
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [{**choice, "finish_reason": finish_reason}],
                    "usage": usage if self.report_usage else None,
                },
                broken=break_after is not None,
            )

        include_usage = self.report_usage and bool(
            (body.get("stream_options") or {}).get("include_usage")
        )
        chunk: dict[str, Any] = {**head, "object": "chat.completion.chunk"}
        if include_usage:
            chunk["usage"] = None

        def delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**chunk, "choices": [choice]}

        events = [
            delta({"role": "assistant", "content": ""}),
            *(delta({"content": word}) for word in words),
            delta({}, finish_reason),
        ]
        if include_usage:
            events.append({**chunk, "choices": [], "usage": usage})
        frames = [f"data: {json.dumps(event)}\n\n".encode() for event in events]
        frames.append(b"data: [DONE]\n\n")
        if break_after is not None:
            return _HangUp(
                _frames(frames[: 1 + break_after], self.token_delay, self._count_frame),
                media_type="text/event-stream",
            )
        return _Watched(
            _frames(frames, self.token_delay, self._count_frame),
            on_hangup=self._count_hangup,
            media_type="text/event-stream",
        )

    def _embeddings(self, body: dict[str, Any], break_after: int | None) -> Response:
        inputs = body["input"]
        if isinstance(inputs, str) or isinstance(inputs[0], int):
            inputs = [inputs]
        texts = [item if isinstance(item, str) else " ".join(map(str, item)) for item in inputs]
        dim = body.get("dimensions") or self.embedding_dim
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(text, dim, as_base64)}
            for i, text in enumerate(texts)
        ]
        tokens = sum(map(count_tokens, texts))
        return _json(
            {"object": "list", "data": data, "model": body["model"], "usage": _usage(tokens)},
            broken=break_after is not None,
        )


class _HangUp(StreamingResponse):
    """Sends its chunks, then returns without finishing the body: uvicorn drops the connection."""

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


class _Watched(StreamingResponse):
    """A stream that reports a client hang-up: Starlette cancels the sending task when the
    client disconnects (ASGI spec < 2.4, which uvicorn declares)."""

    def __init__(
        self, content: AsyncIterator[bytes], *, on_hangup: Callable[[], None], media_type: str
    ) -> None:
        super().__init__(content, media_type=media_type)
        self._on_hangup = on_hangup

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except BaseException:
            self._on_hangup()
            raise


async def _healthz(_request: Request) -> Response:
    return Response()


async def _hold(request: Request, seconds: float) -> None:
    """Waits ``seconds``, or less if the client hangs up first (a timed-out call frees the server).
    The body is already read, so the next ASGI message is the disconnect."""
    with anyio.move_on_after(seconds):
        while (await request.receive())["type"] != "http.disconnect":
            pass


async def _frames(
    frames: Sequence[bytes], delay: float, on_frame: Callable[[], None] | None = None
) -> AsyncIterator[bytes]:
    for i, frame in enumerate(frames):
        if i and delay:
            await asyncio.sleep(delay)
        if on_frame is not None:
            on_frame()
        yield frame


def _json(payload: dict[str, Any], *, broken: bool) -> Response:
    if not broken:
        return JSONResponse(payload)
    raw = json.dumps(payload).encode()
    return _HangUp(_frames([raw[: len(raw) // 2]], 0), media_type="application/json")


def _encode(text: str, dim: int, as_base64: bool) -> list[float] | str:
    vector = fake_embedding(text, dim)
    return base64.b64encode(array("f", vector).tobytes()).decode() if as_base64 else vector


def _usage(prompt_tokens: int, completion_tokens: int | None = None) -> dict[str, int]:
    if completion_tokens is None:  # embeddings
        return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    total = prompt_tokens + completion_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def _error(status: int, message: str | None = None, retry_after: float | None = None) -> Response:
    error = {
        "message": message or f"Scripted fake error (HTTP {status})",
        "type": "server_error" if status >= 500 else "invalid_request_error",
        "param": None,
        "code": "rate_limit_exceeded" if status == 429 else None,
    }
    headers = None if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


__all__ = [
    "CITED_ANSWER",
    "NO_ANSWER",
    "FakeOpenAI",
    "Fault",
    "RecordedRequest",
    "count_tokens",
    "default_reply",
    "fake_embedding",
    "message_text",
]
