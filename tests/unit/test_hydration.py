"""Search hydration reads only the head of a ranking, and reads further when chunks are gone."""

from __future__ import annotations

from typing import Any

import pytest

from core.repository.embeddings import ChunkRow
from retrieval import search
from retrieval.search import hydrate


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Fake chunk rows (labelled: no database here): ids divisible by 3 were deleted."""
    calls: list[list[int]] = []

    def chunk_rows(_session: Any, ids: list[int]) -> dict[int, ChunkRow]:
        calls.append(list(ids))
        return {i: ChunkRow(i, f"doc{i}", f"f{i}.txt", f"text {i}", 0, 6) for i in ids if i % 3}

    monkeypatch.setattr(search.repository, "chunk_rows", chunk_rows)
    return calls


def ranking(ids: list[int]) -> list[tuple[int, float]]:
    return [(i, 1.0 / (n + 1)) for n, i in enumerate(ids)]


def test_reads_only_the_head_when_it_suffices(reads: list[list[int]]) -> None:
    hits = hydrate(None, ranking([1, 2, 4, 5, 7, 8, 10, 11]), top_k=2, batch=4)  # type: ignore[arg-type]
    assert [h.chunk_id for h in hits] == [1, 2]
    assert reads == [[1, 2, 4, 5]]


def test_reads_further_past_deleted_chunks_in_rank_order(reads: list[list[int]]) -> None:
    hits = hydrate(None, ranking([3, 6, 1, 9, 12, 2, 15, 4]), top_k=3, batch=3)  # type: ignore[arg-type]
    assert [h.chunk_id for h in hits] == [1, 2, 4]
    assert [h.score for h in hits] == [1 / 3, 1 / 6, 1 / 8]
    assert reads == [[3, 6, 1], [9, 12, 2], [15, 4]]


def test_fewer_hits_than_asked_when_the_ranking_runs_out(reads: list[list[int]]) -> None:
    assert [h.chunk_id for h in hydrate(None, ranking([3, 1]), top_k=5, batch=10)] == [1]  # type: ignore[arg-type]
    assert hydrate(None, [], top_k=5, batch=10) == []  # type: ignore[arg-type]
    assert reads == [[3, 1]]
