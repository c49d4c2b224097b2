"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Dense cosine scores and BM25 scores live on different scales; RRF uses only ranks, so the two
rankings need no calibration: a chunk's fused score is the sum, over the rankings it appears in,
of 1 / (k + rank), rank counted from 1.
"""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60
) -> list[tuple[int, float]]:
    """Fuse rankings of ids (best first) into one: (id, fused score), best first.

    An id repeated within one ranking counts at its best rank only. Ties are broken by the best
    rank the id reached in any ranking, then by the order of the rankings (the first ranking
    wins), so the result is deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    scores: dict[int, float] = {}
    best: dict[int, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        seen: set[int] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best[item] = min(best.get(item, (rank, which)), (rank, which))
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]]))
