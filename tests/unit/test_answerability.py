"""The retrieval check that declines questions the passages cannot answer, before the model."""

from __future__ import annotations

import pytest

from core.settings import PipelineSettings
from generation.answerability import assess, question_words

TOWER = "The Eiffel Tower was completed in March 1889 for the World Fair by Gustave Eiffel."
SEINE = "The Seine flows through the centre of Paris from east to west."
DEFAULT = PipelineSettings()
THRESHOLDS = (DEFAULT.answerability_min_coverage, DEFAULT.answerability_min_similarity)


def test_question_words_leave_out_question_frames_and_keep_stems() -> None:
    assert question_words("What year did the Ming dynasty end?") == {"ming", "dynasti", "end"}
    assert question_words("What does BIOS stand for?") == {"bio"}
    assert question_words("What is it?") == set()


def test_a_question_about_what_the_passages_hold_is_answerable() -> None:
    verdict = assess("When was the Eiffel Tower completed?", [TOWER, SEINE], [0.3, 0.2], 0.75, 0.45)
    assert verdict.answerable and verdict.covered == verdict.total == 3


def test_far_passages_missing_the_questions_words_are_declined() -> None:
    question = "Which player did the Tampa Bay Buccaneers draft first?"
    verdict = assess(question, [TOWER, SEINE], [0.21, 0.12], *THRESHOLDS)
    assert not verdict.answerable
    assert verdict.covered == 0 and verdict.similarity == pytest.approx(0.21)
    assert "0 of the question's" in verdict.reason() and "cosine 0.21" in verdict.reason()


def test_either_signal_alone_keeps_the_question() -> None:
    question = "Which player did the Tampa Bay Buccaneers draft first?"
    # A near passage (a paraphrase of the question) keeps it, whatever the words.
    assert assess(question, [TOWER], [0.62], *THRESHOLDS).answerable
    # Passages holding the question's words keep it, however far their embedding.
    words = "The Tampa Bay Buccaneers made him the first player of their draft."
    assert assess(question, [words], [0.2], *THRESHOLDS).answerable


def test_coverage_counts_the_passages_together() -> None:
    # A two-hop question: each passage holds half of its words, together all of them.
    question = "Does the Seine flow from east to west by the Eiffel Tower?"
    alone = assess(question, [SEINE], [0.3], *THRESHOLDS)
    together = assess(question, [TOWER, SEINE], [0.3, 0.3], *THRESHOLDS)
    assert not alone.answerable and together.answerable


@pytest.mark.parametrize(
    ("texts", "similarities", "min_coverage"),
    [
        ([TOWER], [None], 0.75),  # lexical retrieval: no cosine, one signal is not enough
        ([TOWER], [0.1], 0.0),  # the check is off
        ([], [], 0.75),  # nothing retrieved (the pipeline answers that case itself)
    ],
)
def test_the_check_never_declines_without_both_signals(
    texts: list[str], similarities: list[float | None], min_coverage: float
) -> None:
    question = "Which player did the Tampa Bay Buccaneers draft first?"
    assert assess(question, texts, similarities, min_coverage, 0.45).answerable


def test_a_question_without_content_words_is_not_judged() -> None:
    assert assess("What is it?", [TOWER], [0.05], *THRESHOLDS).answerable
