"""The retrieval check that declines questions the passages cannot answer, before the model."""

from __future__ import annotations

import pytest

from core.settings import PipelineSettings
from generation.reasoning.answerability import (
    assess,
    best_sentence_coverage,
    missing_numbers,
    question_words,
)

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


RULES = {
    "min_pair_coverage": DEFAULT.answerability_min_pair_coverage,
    "pair_similarity": DEFAULT.answerability_pair_similarity,
    "check_numbers": DEFAULT.answerability_numbers,
}
NSFNET = (
    "NSFNET grew quickly in its first years. By 1990 it had 21 points of presence across the "
    "United States. Its backbone ran at 1,000 times the speed of the ARPANET links."
)


def test_a_number_no_passage_mentions_declines_the_question() -> None:
    question = "How many points of presence did NSFNET have by 1998?"
    verdict = assess(question, [NSFNET], [0.62], *THRESHOLDS, **RULES)
    assert not verdict.answerable and verdict.declined_by == "numbers"
    assert verdict.missing_numbers == ["1998"]
    assert "never mention 1998" in verdict.reason()
    # The same question about a year the passage holds is answered.
    assert assess(
        question.replace("1998", "1990"), [NSFNET], [0.62], *THRESHOLDS, **RULES
    ).answerable
    # Thousands commas do not count: 1000 is the passage's 1,000.
    thousand = "What ran at 1000 times the speed of the ARPANET links?"
    assert assess(thousand, [NSFNET], [0.6], *THRESHOLDS, **RULES).answerable
    # The rule is a setting.
    rules = RULES | {"check_numbers": False}
    assert assess(question, [NSFNET], [0.62], *THRESHOLDS, **rules).answerable


def test_words_scattered_over_unrelated_sentences_decline_the_question() -> None:
    # Every key word is somewhere in the passages (coverage 1.0), but never two together.
    scattered = [
        "The museum shop sells postcards.",
        "A ferry leaves the island twice a day.",
        "Their orchestra toured Europe for a year.",
        "The bridge was painted red by the city.",
        "Children play in the park.",
        "The night market opens at six.",
    ]
    question = "Which orchestra played on the ferry to the museum bridge at night?"
    verdict = assess(question, scattered, [0.3], *THRESHOLDS, **RULES)
    assert verdict.covered == verdict.total == 6 and verdict.pair_covered == 2
    assert not verdict.answerable and verdict.declined_by == "pairs"
    assert "No two sentences" in verdict.reason() and "2 of the question's 6" in verdict.reason()
    # A passage near in meaning keeps it; so does a sentence that holds the words together.
    assert assess(question, scattered, [0.6], *THRESHOLDS, **RULES).answerable
    together = "The orchestra played on the night ferry from the museum to the bridge."
    assert assess(question, [*scattered, together], [0.3], *THRESHOLDS, **RULES).answerable


def test_two_sentences_of_different_passages_make_a_pair() -> None:
    # A two-hop question: the bridge sentence is in one passage, the answer in another.
    question = "Does the Seine flow through the Paris where Gustave Eiffel completed his tower?"
    verdict = assess(question, [TOWER, SEINE], [0.3, 0.3], *THRESHOLDS, **RULES)
    assert verdict.answerable and verdict.pair_covered == verdict.total


def test_the_new_rules_stay_off_without_a_cosine_or_with_the_check_off() -> None:
    question = "How many points of presence did NSFNET have by 1998?"
    assert assess(question, [NSFNET], [None], *THRESHOLDS, **RULES).answerable
    assert assess(question, [NSFNET], [0.62], 0.0, 0.45, **RULES).answerable


@pytest.mark.parametrize(
    ("question", "text", "missing"),
    [
        ("Who bought it in the 1970s?", "It was bought in 1973.", []),  # a year of the decade
        ("Who bought it in the 1970's?", "It was bought in 1983.", ["1970s"]),
        ("Who won in 1994?", "They won often in the 1990s.", ["1994"]),  # which year is unknown
        ("Was it 1,000 times faster?", "It ran 1000 times faster.", []),
        ("Why did it fail in 1755, 56, 57?", "It failed in 1755, 1756 and 1757.", []),  # 2 digits
    ],
)
def test_numbers_are_matched_as_years_decades_and_amounts(
    question: str, text: str, missing: list[str]
) -> None:
    assert missing_numbers(question, [text]) == missing


def test_the_sentence_holding_most_of_the_questions_words_is_found() -> None:
    text = (
        "In 1992 the republic collapsed. The country suffered a vicious civil war between "
        "political and tribal warlords. The Taliban rose in 1996."
    )
    question = "What type of civil war was fought between political and tribal warlords?"
    span, held, total = best_sentence_coverage(question, text)
    assert span is not None
    assert text[span.start : span.end].startswith("The country suffered a vicious civil war")
    assert total == len(question_words(question)) == 7
    assert held == 6, "every key word but 'fought'"
    assert best_sentence_coverage("What is it?", text) == (None, 0, 0)
    assert best_sentence_coverage("Where is Houston?", text)[0] is None
