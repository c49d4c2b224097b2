"""Evidence verified against the source of truth: a quote is kept only when it is the stored
document text at its offsets, so every citation returned is verbatim."""

from __future__ import annotations

import asyncio
from typing import Protocol

from core import repository
from core.db import Database
from generation.reasoning.values import Evidence


class DocumentTexts(Protocol):
    def __call__(self, document_ids: set[str]) -> dict[str, str]:
        """The stored text of each of these documents that exists (blocking I/O)."""
        ...


class StoredTexts:
    """Document texts read from the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def __call__(self, document_ids: set[str]) -> dict[str, str]:
        with self._db.session() as session:
            return repository.document_texts(session, document_ids)


async def verified(evidence: list[Evidence], texts: DocumentTexts) -> list[Evidence]:
    """The evidence whose quote is the stored document text at its offsets, numbered 1..n in
    order."""
    if not evidence:
        return []
    stored = await asyncio.to_thread(texts, {e.document_id for e in evidence})
    kept = [
        e
        for e in evidence
        if (text := stored.get(e.document_id)) is not None and text[e.start : e.end] == e.quote
    ]
    return [
        Evidence(
            i, e.sentence, e.chunk_id, e.document_id, e.filename, e.quote, e.start, e.end, e.reason
        )
        for i, e in enumerate(kept, 1)
    ]
