from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from docuchat_common.identity import Identity, require
from docuchat_common.service import runtime_of
from docuchat_ingest.knowledge_bases.repository import KnowledgeBaseRepository
from docuchat_ingest.search.schemas import SearchIn, SearchMode, SearchOut
from docuchat_ingest.search.service import SearchService, Timings

router = APIRouter(prefix="/api/v1/knowledge-bases", tags=["search"])


# Reading the documents, or chatting about them: chat retrieves with its caller's identity, so
# an API key made for chat only may search too. A search is work: it counts against the plan's
# request rate here, a question's search included (chat counts the question itself).
Searcher = Annotated[Identity, Depends(require(scope=("read", "chat")))]


@router.post("/{kb_id}/search", response_model=SearchOut)
async def search(
    kb_id: uuid.UUID,
    body: SearchIn,
    identity: Searcher,
    *,
    request: Request,
    response: Response,
    mode: SearchMode = "hybrid",
) -> SearchOut:
    """Hybrid search (dense + BM25, fused by RRF). ``mode=dense|sparse`` runs one side alone
    (for evaluation). Chat calls this same route, forwarding its caller's identity."""
    runtime = runtime_of(request)
    service = SearchService(runtime.state["retrieval"])
    timings = Timings()
    # The knowledge-base lookup is this request's only statement: one autocommit round trip,
    # run while the query is embedded, with its connection back in the pool before the store
    # is searched.
    async with runtime.database.read() as session:
        prepared = await service.prepare(
            KnowledgeBaseRepository(session), identity, kb_id, body, mode=mode, timings=timings
        )
    found = await service.run(identity, prepared, timings=timings)
    # The steps' durations for whoever looks (browsers' dev tools, the latency benchmark).
    response.headers["Server-Timing"] = timings.header()
    return found
