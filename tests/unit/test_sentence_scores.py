"""What the pipeline reads from the answer critic's sentence scores: the best sentence, and the
decline before the model when it is under the threshold. Scores are written by hand here;
tests/unit/test_critic.py scores real sentences with the shipped critic."""

from __future__ import annotations

from generation.reasoning.answerability import judge
from generation.reasoning.prompts import make_passages
from generation.reasoning.sentence_scores import SentenceScores
from generation.reasoning.values import Passage
from retrieval.search import Hit
from tests.unit.test_evidence_ranking import PARIS, RIVERS


def passages(*texts: str, similarity: float | None = 0.5) -> list[Passage]:
    hits = [
        Hit(n, f"d{n}", f"f{n}.txt", t, 0.5, 0, len(t), similarity) for n, t in enumerate(texts, 1)
    ]
    return make_passages(hits)


SCORES = SentenceScores({"1.1": 0.1, "1.2": 0.3, "1.3": 0.9, "2.1": 0.3, "2.2": 0.05}, 0.5)


def test_the_best_sentence_wins_with_ties_in_reading_order() -> None:
    found = passages(PARIS, RIVERS)
    ties = SentenceScores({"1.2": 0.3, "2.1": 0.3}, 0.5)
    assert ties.best(found) == ("1.2", 0.3), "the first in reading order among equals"
    assert SCORES.best(found[1:]) == ("2.1", 0.3), "only the passages asked about"
    assert SCORES.best(found) == ("1.3", 0.9)
    assert SCORES.best([]) == (None, 0.0)
    assert SCORES.states_answer("1.3") and not SCORES.states_answer("1.2")
    assert not SCORES.states_answer("9.9"), "an unscored sentence states nothing"


def test_a_question_is_declined_when_no_sentence_reaches_the_threshold() -> None:
    found = passages(PARIS, RIVERS, similarity=0.61)
    check = judge(SCORES, found)
    assert check.answerable and check.declined_by is None
    assert (check.sentence, check.score, check.similarity) == ("1.3", 0.9, 0.61)

    low = SentenceScores({k: v / 10 for k, v in SCORES.by_id.items()}, 0.5)
    declined = judge(low, found)
    assert not declined.answerable and declined.declined_by == "critic"
    assert "sentence 1.3" in declined.reason() and "0.09" in declined.reason()
    empty = judge(SentenceScores({}, 0.5), [])
    assert not empty.answerable and empty.sentence is None
    assert "no sentence" in empty.reason()
