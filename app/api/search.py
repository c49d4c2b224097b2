"""Search."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServicesDep
from app.schemas import SearchHit, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/v1/search")
def search(body: SearchRequest, services: ServicesDep) -> SearchResponse:
    """The top_k chunks for the query (dense, lexical or hybrid), with their source offsets."""
    result = services.searcher.search(body.collection, body.query, body.top_k, body.retrieval)
    return SearchResponse(
        hits=[
            SearchHit(
                chunk_id=h.chunk_id,
                document_id=h.document_id,
                filename=h.filename,
                text=h.text,
                score=h.score,
                start=h.start,
                end=h.end,
                similarity=h.similarity,
            )
            for h in result.hits
        ],
        index_version=result.index_version,
        embedder=result.embedder,
        retrieval=result.retrieval,
    )
