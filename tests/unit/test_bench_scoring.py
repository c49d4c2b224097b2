"""Benchmark scoring on hand-made cases: SQuAD normalisation, EM/F1, containment, citation
precision, evidence recall, abstention, where an answer was lost, and the dataset loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark import scoring
from benchmark.datasets import BenchQuestion, load_benchmark
from benchmark.runner import (
    BenchRunner,
    ModeReport,
    QuestionResult,
    _loss_stage,
    markdown_report,
    split_mode,
)
from tests.conftest import REPO

DATASETS = REPO.parent / "shared" / "datasets"


def test_normalisation_follows_squad() -> None:
    assert scoring.normalize_answer("The  Basic Input/Output System!") == "basic inputoutput system"
    assert scoring.normalize_answer("an apple, a pear") == "apple pear"


def test_exact_match_and_f1_take_the_best_gold() -> None:
    golds = ["Denver Broncos", "the Broncos"]
    assert scoring.exact_match("broncos", golds) == 1.0
    assert scoring.exact_match("Denver", golds) == 0.0
    assert scoring.token_f1("Denver", golds) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert scoring.token_f1("the Denver Broncos team", golds) == pytest.approx(0.8)
    assert scoring.token_f1("Carolina Panthers", golds) == 0.0


def test_containment_is_on_word_boundaries() -> None:
    assert scoring.contains_gold("It was in October 1973.", ["October 1973"])
    assert not scoring.contains_gold("In 19734 it rained", ["1973"])
    assert not scoring.contains_gold("anything", [""])


def test_citation_precision_and_evidence_recall() -> None:
    gold_sentences = ["Paris is the capital of France.", "It lies on the Seine."]
    assert scoring.citation_is_precise("The capital is Paris.", ["Paris"], [])
    assert scoring.citation_is_precise("It lies on the Seine.", ["nope"], gold_sentences)
    assert not scoring.citation_is_precise("Lyon is large.", ["Paris"], gold_sentences)
    assert scoring.evidence_recall(["Paris is the capital of France."], gold_sentences) == 0.5
    assert scoring.evidence_recall([], []) is None


def test_declining_needs_no_citation_no_support_and_saying_so() -> None:
    declined = {
        "answer": "The documents retrieved for this question do not contain the answer.",
        "citations": [],
        "supported": False,
    }
    assert scoring.is_declined(declined)
    assert not scoring.is_declined({**declined, "citations": [{"quote": "x"}]})
    assert not scoring.is_declined({**declined, "answer": "1973"})
    assert scoring.says_not_answered("The passages do not mention who won.")
    assert not scoring.says_not_answered("Denver won the game.")


def _question() -> BenchQuestion:
    return BenchQuestion("q", "Who won?", ("Denver",), ("gold.txt",), ("Denver won the game.",))


def test_loss_stages_follow_the_pipeline() -> None:
    q = _question()
    hits = [{"chunk_id": 1, "filename": "gold.txt"}, {"chunk_id": 2, "filename": "other.txt"}]
    assert _loss_stage(q, {}, [hits[1]]) == "not_retrieved"
    irrelevant = {"relevance": [{"chunk_id": 1, "relevant": False}]}
    assert _loss_stage(q, irrelevant, hits) == "judged_irrelevant"
    checked = {**irrelevant, "answerability": {"answerable": False}}
    assert _loss_stage(q, checked, hits) == "declined_by_retrieval"
    passed = {**irrelevant, "answerability": {"answerable": True}}
    assert _loss_stage(q, passed, hits) == "judged_irrelevant"
    relevant = {"relevance": [{"chunk_id": 1, "relevant": True}]}
    wrong_evidence = {**relevant, "evidence": [{"quote": "Rain fell."}]}
    assert _loss_stage(q, wrong_evidence, hits) == "no_gold_evidence"
    right_evidence = {**relevant, "evidence": [{"quote": "Denver won the game."}]}
    assert _loss_stage(q, {**right_evidence, "answer": "Carolina"}, hits) == "answer_wrong"
    replaced = {**right_evidence, "answer_source": "extractive", "model_answer": "Denver"}
    assert _loss_stage(q, replaced, hits) == "replaced_by_grounding"


def test_mode_summary_separates_answerable_and_unanswerable() -> None:
    report = ModeReport("steps")
    report.results = [
        QuestionResult(
            "a",
            "steps",
            "answerable",
            "?",
            correct=True,
            citations=1,
            verbatim=1,
            precise=1,
            loss="ok",
            latency_ms=10,
        ),
        QuestionResult(
            "b", "steps", "answerable", "?", declined=True, loss="judged_irrelevant", latency_ms=30
        ),
        QuestionResult("c", "steps", "unanswerable", "?", declined=True, latency_ms=20),
    ]
    s = report.summary()
    assert (s["accuracy"], s["declined"], s["false_abstention"]) == (0.5, 1.0, 0.5)
    assert s["citation_precision"] == 1.0 and s["citation_verbatim"] == 1.0
    assert s["losses"]["ok"] == 1 and s["losses"]["judged_irrelevant"] == 1
    assert s["latency_p50_ms"] == 20
    table = markdown_report(
        {
            "dataset": "t",
            "split": "train",
            "model": "m",
            "top_k": 5,
            "retrieval_recall_at_k": 1.0,
            "summary": [s],
            "notes": [],
        }
    )
    assert "self-reasoning (steps)" in table and "judged irrelevant" in table


@pytest.mark.skipif(not DATASETS.is_dir(), reason="the public datasets are not next to the repo")
def test_loaders_give_gold_labels_from_the_train_files() -> None:
    squad2 = load_benchmark("squad2", split="train", questions=40, data_dir=DATASETS)
    assert len(squad2.questions) == 40
    kinds = {q.kind for q in squad2.questions}
    assert kinds == {"answerable", "unanswerable"}
    for q in squad2.questions:
        if q.answerable:
            (doc,) = q.gold_docs
            assert any(a in squad2.documents[doc] for a in q.answers)
            assert any(a in s for a in q.answers for s in q.gold_sentences)
    hotpot = load_benchmark("hotpotqa", split="train", questions=5, data_dir=DATASETS)
    assert len(hotpot.documents) >= 20 and all(len(q.gold_docs) == 2 for q in hotpot.questions)
    held = load_benchmark("squad", split="train", questions=20, data_dir=DATASETS, holdout=0.5)
    left_out = [q for q in held.questions if q.kind == "left_out"]
    assert left_out and all(q.gold_docs[0] not in held.documents for q in left_out)
    scifact = load_benchmark("scifact", split="train", questions=10, data_dir=DATASETS)
    assert all(d in scifact.documents for q in scifact.questions for d in q.gold_docs)


def test_folder_dataset(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.md").write_text("Alpha is first.")
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"id": "1", "question": "What is first?", "answers": ["Alpha"], "doc": "a.md"})
        + "\n"
    )
    bench = load_benchmark(str(tmp_path))
    assert bench.documents == {"a.md": "Alpha is first."}
    assert bench.questions[0].gold_docs == ("a.md",)


def test_a_mode_can_name_an_adapter() -> None:
    assert split_mode("steps") == ("steps", None)
    assert split_mode("steps@self-reasoning") == ("steps", "self-reasoning")
    with pytest.raises(ValueError, match="unknown modes"):
        BenchRunner(object(), "c", modes=["stepz@x"])  # type: ignore[arg-type]
