"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Dense cosine scores and BM25 scores live on different scales; RRF uses only ranks, so the two
rankings need no calibration: a chunk's fused score is the sum, over the rankings it appears in,
of 1 / (k + rank), rank counted from 1.
"""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse rankings of ids (best first) into one: (id, fused score), best first.

    `weights` scales each ranking's 1 / (k + rank) (default: 1 each). An id repeated within one
    ranking counts at its best rank only. Ties are broken by the best rank the id reached in any
    ranking, then by the order of the rankings (the first ranking wins), so the result is
    deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[int, float] = {}
    best: dict[int, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        seen: set[int] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weights[which] / (k + rank)
            best[item] = min(best.get(item, (rank, which)), (rank, which))
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]]))
