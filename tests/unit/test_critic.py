"""The shipped answer critic (generation/critic.py): it loads offline from the repository, refuses
files that are not the ones its manifest describes, and scores hand-made (question, sentence)
pairs as a reader would: the sentence that states the answer above its threshold, sentences on
the topic that do not (near misses included) below it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from generation.critic import (
    MANIFEST_FILE,
    MODEL_FILE,
    SHIPPED,
    AnswerCritic,
    CriticUnavailable,
    shipped_critic,
)


@pytest.fixture(scope="module")
def critic() -> AnswerCritic:
    return shipped_critic()


def test_the_shipped_critic_is_small_and_says_how_it_was_made(critic: AnswerCritic) -> None:
    manifest = json.loads((SHIPPED / MANIFEST_FILE).read_text())
    assert (SHIPPED / MODEL_FILE).stat().st_size < 50 * 2**20
    assert 0 < critic.threshold < 1 and manifest["threshold"] == critic.threshold
    assert manifest["training"]["pairs_seen"] > 1000
    assert manifest["training"]["validation"]["roc_auc"] > 0.85


def test_a_changed_or_missing_model_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "critic"
    shutil.copytree(SHIPPED, copy)
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(CriticUnavailable, match="not the critic its manifest describes"):
        AnswerCritic(copy)
    (copy / MODEL_FILE).unlink()
    with pytest.raises(CriticUnavailable, match="cannot be read"):
        AnswerCritic(copy)


@pytest.mark.parametrize(
    ("question", "answer", "misses"),
    [
        (
            "When was the Eiffel Tower completed?",
            "The Eiffel Tower was completed in March 1889 for the World Fair by Gustave Eiffel.",
            [
                "The Seine flows through the centre of Paris from east to west.",
                "Paris is the capital and the largest city of France by population.",
            ],
        ),
        (
            "What is the default of --num-callers?",
            "--num-callers=<number> [default: 12] Specifies the maximum number of entries shown "
            "in stack traces.",
            ["Valgrind records a stack trace for each error it reports."],
        ),
        (
            "Who designed the Kestrel engine?",
            "The Kestrel engine was designed by Mara Lindqvist at the Orrin works in 1931.",
            [
                "The Kestrel engine powered the first mail aircraft across the northern sea.",
                "Orrin works closed in 1958 after a fire.",
            ],
        ),
    ],
)
def test_the_sentence_that_states_the_answer_is_the_one_above_the_threshold(
    critic: AnswerCritic, question: str, answer: str, misses: list[str]
) -> None:
    scores = critic.scores(question, [answer, *misses])
    assert scores[0] >= critic.threshold, scores
    assert all(s < critic.threshold for s in scores[1:]), scores
    assert critic.states_answer(question, answer)


def test_scores_are_batched_and_stable(critic: AnswerCritic) -> None:
    question = "When was the Eiffel Tower completed?"
    sentence = "The Eiffel Tower was completed in March 1889."
    many = critic.scores(question, [sentence] * 70)  # more than one onnxruntime batch
    assert len(many) == 70 and max(many) - min(many) < 1e-6
    assert critic.score(question, sentence) == pytest.approx(many[0], abs=1e-6)
    assert critic.scores(question, []) == []


def test_a_question_longer_than_the_models_window_is_cut_not_refused(
    critic: AnswerCritic,
) -> None:
    question = "copra " * 2000
    [score] = critic.scores(question, ["Zanzibar exported copra, cloves and ivory."])
    assert 0.0 <= score <= 1.0
