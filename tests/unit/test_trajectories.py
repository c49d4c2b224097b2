"""Trajectory rendering against the pipeline's own parsers: a gold trajectory parses and
verifies, and a target the pipeline would reject is caught before it becomes training data."""

from __future__ import annotations

import json

import pytest

from benchmark.datasets import BenchQuestion
from core.settings import PipelineSettings
from generation.reasoning.prompts import make_passages
from generation.reasoning.replies import parse_analysis, parse_evidence, parse_relevance
from retrieval.search import Hit
from training.trajectories import build_trajectory, check_trajectory

SETTINGS = PipelineSettings()
GOLD = (
    "The Amazon River flows through Brazil, Peru and Colombia. "
    "It discharges more water than any other river in the world. "
    "Its mouth lies on the Atlantic coast of Brazil."
)
OTHER = (
    "The Nile is a major north-flowing river in northeastern Africa. "
    "It flows into the Mediterranean Sea."
)


def passages() -> list:
    hits = [
        Hit(1, "d1", "nile.txt", OTHER, 0.8, 0, len(OTHER)),
        Hit(2, "d2", "amazon.txt", GOLD, 0.7, 0, len(GOLD)),
    ]
    return make_passages(hits)


def question(**kw: object) -> BenchQuestion:
    base: dict = {
        "id": "q1",
        "question": "Which river discharges the most water in the world?",
        "answers": ("The Amazon River", "Amazon"),
        "gold_docs": ("amazon.txt",),
        "gold_sentences": ("It discharges more water than any other river in the world.",),
    }
    return BenchQuestion(**{**base, **kw})  # type: ignore[arg-type]


def test_a_gold_trajectory_parses_and_verifies_with_the_pipelines_parsers() -> None:
    ps = passages()
    t = build_trajectory(question(), ps, SETTINGS)
    assert t.source == "template" and t.answerable
    assert [s.step for s in t.steps] == ["relevance", "evidence", "analysis"]
    steps = {s.step: s for s in t.steps}
    judged = parse_relevance(json.loads(steps["relevance"].target), ps, SETTINGS.reason_max_chars)
    assert [j.relevant for j in judged] == [False, True]
    relevant = [p for p, j in zip(ps, judged, strict=True) if j.relevant]
    evidence = parse_evidence(
        json.loads(steps["evidence"].target), relevant, SETTINGS.max_evidence, 120
    )
    assert evidence and all(e.quote in GOLD for e in evidence)
    quotes = [e.quote for e in evidence]
    assert "Amazon River flows" in quotes[0], "a sentence stating the answer comes first"
    assert any("discharges more water" in q for q in quotes), "then the supporting fact"
    analysis, answer = parse_analysis(json.loads(steps["analysis"].target), 600, 200)
    assert answer == "Amazon" and "[1]" in analysis
    # Each step's prompt is exactly what the pipeline sends: system + user, and the schema the
    # pipeline constrains decoding with.
    for step in t.steps:
        assert [m["role"] for m in step.messages] == ["system", "user"]
        assert step.schema["type"] == "object"
    assert "document_1" in steps["relevance"].schema["properties"]


def test_unanswerable_questions_get_a_nothing_relevant_trajectory() -> None:
    ps = passages()
    t = build_trajectory(question(answers=(), kind="unanswerable"), ps, SETTINGS)
    assert not t.answerable
    assert [s.step for s in t.steps] == ["relevance"]
    target = json.loads(t.steps[0].target)
    assert [v["relevant"] for v in target.values()] == [False, False]


def test_a_gold_passage_not_retrieved_is_a_nothing_relevant_trajectory() -> None:
    ps = passages()[:1]  # only the distractor was retrieved
    t = build_trajectory(question(), ps, SETTINGS)
    assert not t.answerable and [s.step for s in t.steps] == ["relevance"]


def test_a_target_the_pipeline_would_reject_is_caught() -> None:
    ps = passages()
    t = build_trajectory(question(), ps, SETTINGS)
    analysis = next(s for s in t.steps if s.step == "analysis")
    broken = json.loads(analysis.target)
    broken["analysis"] = "The Amazon. [7]"  # a marker that points at no evidence
    index = t.steps.index(analysis)
    t.steps[index] = type(analysis)(
        analysis.step, analysis.messages, analysis.schema, json.dumps(broken), 400
    )
    with pytest.raises(ValueError, match="markers"):
        check_trajectory(t, ps, SETTINGS)


@pytest.mark.parametrize(
    ("prompt_set", "order"),
    [("steps-2026-12d", ["answer", "analysis"]), ("steps-2026-12c", ["analysis", "answer"])],
)
def test_a_prompt_set_renders_its_analysis_target_in_the_schemas_order(
    prompt_set: str, order: list[str]
) -> None:
    settings = PipelineSettings(prompt_set=prompt_set)  # type: ignore[arg-type]
    t = build_trajectory(question(), passages(), settings)
    analysis = {s.step: s for s in t.steps}["analysis"]
    assert list(analysis.schema["properties"]) == order
    assert list(json.loads(analysis.target)) == order
    answer_first = "First answer the question" in analysis.messages[-1]["content"]
    assert answer_first == (order[0] == "answer")
    check_trajectory(t, passages(), settings)
