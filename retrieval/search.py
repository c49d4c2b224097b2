"""Search: dense (embed the query with the collection's active embedder, ask its FAISS index),
lexical (BM25 over chunk text) or hybrid (both, fused by reciprocal rank); then hydrate hits.

Hits are hydrated from the database, or from a snapshot of the collection's rows that is exact
at the index version read fresh during the search (retrieval/row_snapshots.py). Either way a
chunk deleted after the index last caught up is dropped here and never returned.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

from core import repository
from core.collection_state import CollectionState, CollectionStates
from core.db import Database
from core.repository import ChunkRow
from core.settings import IndexSettings, RetrievalMode, RetrievalSettings
from retrieval.bm25_store import Bm25Store
from retrieval.embedders import EmbedderPool
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.index_store import IndexStore
from retrieval.row_snapshots import ChunkRowSnapshots


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: str
    filename: str
    text: str
    score: float
    start: int
    end: int
    # Cosine of the question and the chunk when the dense ranking reached it (dense and hybrid
    # retrieval); None otherwise. Unlike `score` (a fused rank score in hybrid mode) it is on
    # the embedder's own scale, so the pipeline can tell a near passage from a far one.
    similarity: float | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: int
    embedder: str
    # The retrieval mode that produced the hits: dense, lexical or hybrid.
    retrieval: str = "dense"


def hydrate(
    read_rows: Callable[[list[int]], dict[int, ChunkRow]],
    ranked: list[tuple[int, float]],
    top_k: int,
    batch: int,
    similarities: dict[int, float] | None = None,
) -> list[Hit]:
    """The first top_k ranked chunks that still exist, read `batch` ids at a time. The ranking
    is deeper than top_k (the fusion depth, overfetch for deletions the index has not caught up
    with), but its head is usually enough, so the texts of the rest are never fetched.
    `similarities` (chunk id → dense cosine) fills each hit's `similarity`. `read_rows` gives
    the rows of the ids that still exist."""
    step = max(batch, top_k, 1)
    similarities = similarities or {}
    hits: list[Hit] = []
    for start in range(0, len(ranked), step):
        head = ranked[start : start + step]
        rows = read_rows([i for i, _ in head])
        hits += [
            Hit(
                row.chunk_id,
                row.document_id,
                row.filename,
                row.text,
                score,
                row.start,
                row.end,
                similarities.get(chunk_id),
            )
            for chunk_id, score in head
            if (row := rows.get(chunk_id)) is not None
        ]
        if len(hits) >= top_k:
            break
    return hits[:top_k]


class _Gone:
    """Counts the ids a row reader was asked for that it did not find (deleted chunks)."""

    def __init__(self) -> None:
        self.count = 0

    def counting(
        self, read_rows: Callable[[list[int]], dict[int, ChunkRow]]
    ) -> Callable[[list[int]], dict[int, ChunkRow]]:
        def read(ids: list[int]) -> dict[int, ChunkRow]:
            rows = read_rows(ids)
            self.count += len(ids) - len(rows)
            return rows

        return read


class Searcher:
    def __init__(
        self,
        db: Database,
        embedders: EmbedderPool,
        indexes: IndexStore,
        lexical: Bm25Store,
        settings: IndexSettings,
        retrieval: RetrievalSettings,
        states: CollectionStates | None = None,
        rows: ChunkRowSnapshots | None = None,
    ) -> None:
        self._db = db
        self.rows = rows
        self.states = states or CollectionStates(db, enabled=False)
        self._embedders = embedders
        self._indexes = indexes
        self._lexical = lexical
        self._settings = settings
        self._retrieval = retrieval

    def search(
        self,
        collection_name: str,
        query: str,
        top_k: int,
        retrieval: RetrievalMode | None = None,
    ) -> SearchResult:
        """The top_k chunks for the query. `retrieval` overrides the collection's setting,
        which overrides the server default (settings.retrieval.default).

        When chunks the index ranked are gone from the database, a change committed while
        this search ran (a delete, or a document replaced by its new version in one
        transaction): the search runs again once at the version now committed, so that a
        replaced document is found in its new version, never in neither."""
        state = self.states.get(collection_name)
        result, dropped = self._search_at(state, query, top_k, retrieval)
        if dropped:
            now = CollectionState(
                *self._db.read(partial(repository.collection_state, name=collection_name))
            )
            if now.index_version != state.index_version:
                result, _ = self._search_at(now, query, top_k, retrieval)
        return result

    def _search_at(
        self, state: CollectionState, query: str, top_k: int, retrieval: RetrievalMode | None
    ) -> tuple[SearchResult, int]:
        """The search at the collection's `state`, and how many ranked chunks it found gone."""
        collection_id, version, embedder_id = state.id, state.index_version, state.embedder
        mode = retrieval or state.retrieval or self._retrieval.default
        # Dense alone overfetches so deletions not yet caught up can be dropped; a ranking that
        # is fused also needs depth, or a chunk ranked well by only one side never surfaces.
        overfetch = top_k * max(1, self._settings.overfetch)
        depth = overfetch if mode == "dense" else max(overfetch, self._retrieval.candidates)
        # Read while the question encodes: whether the row snapshot is exact now.
        fresh = self.rows.fresh_version(collection_id, version) if self.rows else None
        rankings: list[list[tuple[int, float]]] = []
        similarities: dict[int, float] = {}
        if mode in ("dense", "hybrid"):
            rankings.append(self._dense(collection_id, embedder_id, version, query, depth))
            similarities = dict(rankings[0])
        if mode in ("lexical", "hybrid"):
            scores, ids = self._lexical.get(collection_id, version).search(query, depth)
            rankings.append([(int(i), float(s)) for s, i in zip(scores, ids, strict=True)])
        if len(rankings) == 1:
            ranked = rankings[0]
        else:
            ranked = reciprocal_rank_fusion(
                [[i for i, _ in r] for r in rankings], self._retrieval.rrf_k
            )
        gone = _Gone()
        hits = self._hydrate(collection_id, fresh, ranked, top_k, overfetch, similarities, gone)
        return SearchResult(hits, version, embedder_id, mode), gone.count

    def _hydrate(
        self,
        collection_id: str,
        fresh: Future[int] | None,
        ranked: list[tuple[int, float]],
        top_k: int,
        batch: int,
        similarities: dict[int, float],
        gone: _Gone,
    ) -> list[Hit]:
        """Hits from the ranking; `gone` counts the ranked chunks found deleted."""
        if fresh is not None and self.rows is not None:
            try:
                rows = self.rows.rows(collection_id, fresh.result())
            except Exception:  # the version could not be read: the read below reports why
                rows = None
            if rows is not None:
                snapshot = rows
                return hydrate(
                    gone.counting(lambda ids: {i: snapshot[i] for i in ids if i in snapshot}),
                    ranked,
                    top_k,
                    batch,
                    similarities,
                )
        # A connection is taken only now, not while the question is encoded (batched encodes
        # wait for each other; holding connections then would drain the pool). The version
        # read above holds one for its own query only, on one of the snapshots' few threads.
        return self._db.read(
            lambda session: hydrate(
                gone.counting(partial(repository.chunk_rows, session)),
                ranked,
                top_k,
                batch,
                similarities,
            )
        )

    def close(self) -> None:
        if self.rows is not None:
            self.rows.close()

    def _dense(
        self, collection_id: str, embedder_id: str, version: int, query: str, depth: int
    ) -> list[tuple[int, float]]:
        # One request uses one (embedder, index) pair throughout, read once by the caller.
        index = self._indexes.get(collection_id, embedder_id, version)
        if index is None or len(index) == 0:
            return []
        vector = self._embedders.for_queries(embedder_id).embed_query(query)
        scores, ids = index.search(vector, depth)
        return [(int(i), float(s)) for s, i in zip(scores, ids, strict=True) if i >= 0]
