"""Search: embed the query with the collection's active embedder, ask its index, hydrate hits.

Hits are hydrated from the database, so a chunk deleted after the index last caught up is
dropped here and never returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import repository
from core.db import Database
from core.settings import IndexSettings
from retrieval.embedders import EmbedderPool
from retrieval.index_store import IndexStore


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: str
    filename: str
    text: str
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: int
    embedder: str


class Searcher:
    def __init__(
        self, db: Database, embedders: EmbedderPool, indexes: IndexStore, settings: IndexSettings
    ) -> None:
        self._db = db
        self._embedders = embedders
        self._indexes = indexes
        self._settings = settings

    def search(self, collection_name: str, query: str, top_k: int) -> SearchResult:
        with self._db.session() as session:
            collection = repository.get_collection(session, collection_name)
            collection_id, version, embedder_id = (
                collection.id,
                collection.index_version,
                collection.embedder,
            )
        # One request uses one (embedder, index) pair throughout, read once above.
        index = self._indexes.get(collection_id, embedder_id, version)
        if index is None or len(index) == 0:
            return SearchResult([], version, embedder_id)
        vector = self._embedders.get(embedder_id).embed_query(query)
        scores, ids = index.search(vector, top_k * max(1, self._settings.overfetch))
        ranked = [(int(i), float(s)) for s, i in zip(scores, ids, strict=True) if i >= 0]
        with self._db.session() as session:
            rows = repository.chunk_rows(session, [i for i, _ in ranked])
        hits = [
            Hit(row.chunk_id, row.document_id, row.filename, row.text, score, row.start, row.end)
            for chunk_id, score in ranked
            if (row := rows.get(chunk_id)) is not None
        ]
        return SearchResult(hits[:top_k], version, embedder_id)
