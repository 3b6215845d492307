"""Passages for a question, from ingest's knowledge-base search, as the caller.

Chat holds no index: it asks ingest over HTTP and forwards the identity the caller's request
carried, so ingest scopes the search to that tenant (another tenant's knowledge base is a 404).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from docuchat_common.errors import (
    BadGateway,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Unprocessable,
    retry_after_seconds,
)
from docuchat_common.identity import IDENTITY_HEADER
from docuchat_common.logging import get_logger

log = get_logger(__name__)


class Hit(BaseModel):
    document_id: uuid.UUID
    filename: str
    page: int | None = None
    page_end: int | None = None
    heading_path: list[str] | str | None = None
    chunk_id: str
    chunk_index: int | None = None
    text: str
    score: float
    # Cosine similarity between the question and the chunk: comparable across questions,
    # unlike a fused rank score.
    similarity: float | None = None


class KnowledgeBaseInfo(BaseModel):
    id: uuid.UUID
    name: str
    system_prompt: str | None = None


class SearchResult(BaseModel):
    hits: list[Hit]
    knowledge_base: KnowledgeBaseInfo


class RetrievalClient:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            # Idle connections are dropped well before ingest's server closes them (uvicorn:
            # 5 s, like httpx's default): reusing one the server is closing fails the search
            # with a ReadError (seen under 32-100 concurrent streams, bench.chat).
            limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0
            ),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def search(
        self,
        knowledge_base_id: uuid.UUID,
        query: str,
        *,
        top_k: int | None,
        identity_headers: Mapping[str, str],
    ) -> SearchResult:
        body: dict[str, object] = {"query": query}
        if top_k is not None:
            body["top_k"] = top_k
        response = await self._call(
            "POST",
            f"/api/v1/knowledge-bases/{knowledge_base_id}/search",
            "document search",
            json=body,
            headers=dict(identity_headers),
        )
        if response.status_code == 422:  # the question itself (ingest says why, with a code)
            problem = _problem(response)
            raise Unprocessable(
                str(problem.get("detail") or "the question cannot be searched"),
                code=str(problem.get("code") or "validation_error"),
            )
        if response.status_code == 429:
            # The tenant's plan rate (ingest counts the searches a question makes with the
            # tenant's own): the caller waits, as for any other limit, instead of a 502.
            problem = _problem(response)
            error = QuotaExceeded if problem.get("code") == "quota_exceeded" else RateLimited
            raise error(
                str(problem.get("detail") or "too many requests"),
                retry_after=retry_after_seconds(response.headers) or 1.0,
            )
        return _answer(response, SearchResult, "document search")

    async def knowledge_base(
        self, knowledge_base_id: uuid.UUID, *, identity_headers: Mapping[str, str]
    ) -> KnowledgeBaseInfo:
        """The knowledge base as the caller sees it: another tenant's, or a missing one, is a
        404 ``knowledge_base_not_found``."""
        response = await self._call(
            "GET",
            f"/api/v1/knowledge-bases/{knowledge_base_id}",
            "knowledge base lookup",
            headers=dict(identity_headers),
        )
        return _answer(response, KnowledgeBaseInfo, "knowledge base lookup")

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request to ingest: unreachable is a 503, a knowledge base the caller cannot see
        a 404; any other answer is the caller's to read."""
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("retrieval unreachable", call=what, error=type(exc).__name__)
            raise ServiceUnavailable(
                f"{what} is unavailable", code="retrieval_unavailable"
            ) from exc
        if response.status_code == 404:
            raise NotFound("knowledge base not found", code="knowledge_base_not_found")
        return response


Model = TypeVar("Model", bound=BaseModel)


def _answer(response: httpx.Response, model: type[Model], what: str) -> Model:
    """A successful answer read as ``model``; any other is a 502."""
    if response.status_code >= 400:
        log.warning(
            "retrieval failed", call=what, status=response.status_code, body=response.text[:300]
        )
        raise BadGateway(f"{what} failed", code="retrieval_failed")
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise BadGateway(f"{what} answered unexpectedly", code="retrieval_failed") from exc


def identity_headers(connection: HTTPConnection) -> dict[str, str]:
    """The caller's identity as it came, for ingest to scope what it answers by."""
    internal = connection.headers.get(IDENTITY_HEADER)
    if internal:
        return {IDENTITY_HEADER: internal}
    authorization = connection.headers.get("authorization")
    return {"Authorization": authorization} if authorization else {}


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
