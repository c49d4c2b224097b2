"""Reciprocal rank fusion on hand-made rankings."""

from __future__ import annotations

import pytest

from retrieval.fusion import reciprocal_rank_fusion


def test_an_id_both_rankings_agree_on_wins() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [2, 4, 1]], k=60)
    assert [i for i, _ in fused] == [2, 1, 4, 3]
    scores = dict(fused)
    assert scores[2] == pytest.approx(1 / 62 + 1 / 61)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 63)
    assert scores[4] == pytest.approx(1 / 62)
    assert scores[3] == pytest.approx(1 / 63)


def test_a_chunk_only_one_side_finds_still_surfaces() -> None:
    # The lexical side alone finds 9 (say, an exact identifier); it still reaches the top 3.
    dense = [10, 11, 12, 13, 14]
    lexical = [9, 10]
    top3 = [i for i, _ in reciprocal_rank_fusion([dense, lexical], k=60)][:3]
    assert top3 == [10, 9, 11]


def test_ties_break_by_best_rank_then_first_ranking() -> None:
    # 1 and 5 both sit at rank 1 of one ranking: the first ranking's wins the tie.
    assert [i for i, _ in reciprocal_rank_fusion([[1], [5]])] == [1, 5]
    assert [i for i, _ in reciprocal_rank_fusion([[5], [1]])] == [5, 1]


def test_smaller_k_weighs_the_top_ranks_more() -> None:
    # 1 is first in one ranking only; 2 is second and third in both.
    dense = [1, 2]
    lexical = [3, 4, 2]
    # k=0 (1/rank): 1 scores 1, 2 scores 1/2 + 1/3, so one first place wins.
    assert reciprocal_rank_fusion([dense, lexical], k=0)[0][0] == 1
    # k=60: 1/61 < 1/62 + 1/63, so agreement wins.
    assert reciprocal_rank_fusion([dense, lexical], k=60)[0][0] == 2


def test_a_repeated_id_counts_once_at_its_best_rank() -> None:
    fused = dict(reciprocal_rank_fusion([[7, 7, 8]], k=60))
    assert fused == pytest.approx({7: 1 / 61, 8: 1 / 63})


def test_empty_rankings_fuse_to_nothing() -> None:
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([]) == []
    assert [i for i, _ in reciprocal_rank_fusion([[], [3, 4]])] == [3, 4]


def test_negative_k_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([[1]], k=-1)


def test_weights_scale_each_ranking_and_must_match_them() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 1]], k=0, weights=[1.0, 0.5]))
    assert fused == {1: 1.0 + 0.25, 2: 0.5 + 0.5}
    assert reciprocal_rank_fusion([[1, 2], [2, 1]], k=0, weights=[1.0, 1.0]) == (
        reciprocal_rank_fusion([[1, 2], [2, 1]], k=0)
    )
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
