"""Index data: embedding ids and vectors, chunk ids and texts (BM25), chunk rows for hits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import (
    Chunk,
    Document,
    DocumentStatus,
    Embedding,
)
from core.repository.values import ChunkRow


def embedding_ids(session: Session, collection_id: str, embedder: str) -> np.ndarray:
    ids = session.scalars(
        select(Embedding.chunk_id).where(
            Embedding.collection_id == collection_id, Embedding.embedder == embedder
        )
    ).all()
    return np.asarray(ids, dtype=np.int64)


def embedding_vectors(
    session: Session, collection_id: str, embedder: str, ids: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a collection's embeddings for one embedder; all of them, or `ids`."""
    query = select(Embedding.chunk_id, Embedding.vector).where(
        Embedding.collection_id == collection_id, Embedding.embedder == embedder
    )
    out_ids: list[int] = []
    blobs: list[bytes] = []
    batches = [None] if ids is None else [ids[i : i + 5000] for i in range(0, len(ids), 5000)]
    for batch in batches:
        batch_query = query if batch is None else query.where(Embedding.chunk_id.in_(batch))
        for chunk_id, vector in session.execute(batch_query):
            out_ids.append(int(chunk_id))
            blobs.append(vector)
    if not blobs:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)
    return np.asarray(out_ids, dtype=np.int64), matrix.astype(np.float32, copy=False)


def chunk_rows(session: Session, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
    """Chunks by id, only those whose document is still ready (deleted ones are simply absent)."""
    if not chunk_ids:
        return {}
    rows = session.execute(
        select(
            Chunk.id,
            Chunk.document_id,
            Document.filename,
            Chunk.text,
            Chunk.start_offset,
            Chunk.end_offset,
        )
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.id.in_(list(chunk_ids)), Document.status == DocumentStatus.READY)
    ).all()
    return {int(r[0]): ChunkRow(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows}


def chunk_ids(session: Session, collection_id: str) -> np.ndarray:
    """Ids of a collection's chunks (only ready documents have any): what BM25 indexes."""
    ids = session.scalars(select(Chunk.id).where(Chunk.collection_id == collection_id)).all()
    return np.asarray(ids, dtype=np.int64)


def chunk_texts(
    session: Session, collection_id: str, ids: Sequence[int] | None = None
) -> tuple[list[int], list[str]]:
    """(ids, texts) of a collection's chunks; all of them, or those of `ids` still present."""
    query = select(Chunk.id, Chunk.text).where(Chunk.collection_id == collection_id)
    out_ids: list[int] = []
    texts: list[str] = []
    batches = [None] if ids is None else [ids[i : i + 5000] for i in range(0, len(ids), 5000)]
    for batch in batches:
        batch_query = query if batch is None else query.where(Chunk.id.in_(list(batch)))
        for chunk_id, text in session.execute(batch_query):
            out_ids.append(int(chunk_id))
            texts.append(text)
    return out_ids, texts
