"""Search hydration reads only the head of a ranking, and reads further when chunks are gone."""

from __future__ import annotations

from core.repository.embeddings import ChunkRow
from retrieval.search import hydrate

reads: list[list[int]] = []


def chunk_rows(ids: list[int]) -> dict[int, ChunkRow]:
    """Fake chunk rows (labelled: no database here): ids divisible by 3 were deleted."""
    reads.append(list(ids))
    return {i: ChunkRow(i, f"doc{i}", f"f{i}.txt", f"text {i}", 0, 6) for i in ids if i % 3}


def setup_function() -> None:
    reads.clear()


def ranking(ids: list[int]) -> list[tuple[int, float]]:
    return [(i, 1.0 / (n + 1)) for n, i in enumerate(ids)]


def test_reads_only_the_head_when_it_suffices() -> None:
    hits = hydrate(chunk_rows, ranking([1, 2, 4, 5, 7, 8, 10, 11]), top_k=2, batch=4)
    assert [h.chunk_id for h in hits] == [1, 2]
    assert reads == [[1, 2, 4, 5]]


def test_reads_further_past_deleted_chunks_in_rank_order() -> None:
    hits = hydrate(chunk_rows, ranking([3, 6, 1, 9, 12, 2, 15, 4]), top_k=3, batch=3)
    assert [h.chunk_id for h in hits] == [1, 2, 4]
    assert [h.score for h in hits] == [1 / 3, 1 / 6, 1 / 8]
    assert reads == [[3, 6, 1], [9, 12, 2], [15, 4]]


def test_fewer_hits_than_asked_when_the_ranking_runs_out() -> None:
    assert [h.chunk_id for h in hydrate(chunk_rows, ranking([3, 1]), top_k=5, batch=10)] == [1]
    assert hydrate(chunk_rows, [], top_k=5, batch=10) == []
    assert reads == [[3, 1]]
