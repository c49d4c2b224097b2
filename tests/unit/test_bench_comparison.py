"""`rag bench-compare`: two bench reports of the same questions, paired question by question,
with a seeded bootstrap interval; the reports are built with benchmark/runner.py's own types,
so they have the shape `rag bench` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from benchmark.comparison import ReportError, check_report, compare, paired_bootstrap
from benchmark.runner import BenchReport, ModeReport, QuestionResult


def _result(qid: str, mode: str, *, correct: bool, **fields: Any) -> QuestionResult:
    return QuestionResult(
        qid,
        mode,
        fields.pop("kind", "answerable"),
        f"question {qid}?",
        answer="gold" if correct else "something else",
        correct=correct,
        exact_match=float(correct),
        f1=1.0 if correct else 0.2,
        latency_ms=fields.pop("latency_ms", 1000.0),
        **fields,
    )


def _report(
    modes: dict[str, list[QuestionResult]], dataset: str = "squad", split: str = "train"
) -> dict[str, Any]:
    return BenchReport(
        dataset,
        split,
        "bench-squad-0123abcd",
        5,
        "qwen",
        0.9,
        None,
        [ModeReport(mode, results) for mode, results in modes.items()],
        [],
        1.0,
    ).to_json()


def _right(n: int, mode: str = "steps", *, right: int) -> list[QuestionResult]:
    """n questions q0..q(n-1), the first `right` of them answered correctly."""
    return [_result(f"q{i}", mode, correct=i < right) for i in range(n)]


def _row(comparison: Any, mode: str, metric: str) -> Any:
    return next(r for r in comparison.rows if r.mode == mode and r.metric == metric)


def test_a_clear_improvement_has_an_interval_above_zero() -> None:
    before = _report({"steps": _right(40, right=10)})
    after = _report({"steps": _right(40, right=34)})

    accuracy = _row(compare(before, after), "steps", "accuracy")

    assert (accuracy.first, accuracy.second) == (0.25, 0.85)
    assert accuracy.difference == pytest.approx(0.6)
    assert 0 < accuracy.low < 0.6 < accuracy.high
    assert not accuracy.within_noise


def test_identical_reports_differ_by_zero_with_interval_zero() -> None:
    report = _report({"steps": _right(20, right=7), "one_call": _right(20, "one_call", right=12)})

    comparison = compare(report, report)

    assert comparison.modes == ["steps", "one_call"]
    assert comparison.questions == 20 and comparison.left_out == 0
    for row in comparison.rows:
        assert (row.difference, row.low, row.high) == (0, 0, 0), row
        assert row.within_noise


def test_a_small_difference_on_few_questions_is_within_the_noise() -> None:
    mean, low, high = paired_bootstrap([1, 0, 1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0, 1, 1])

    assert mean == pytest.approx(0.125)
    assert low < 0 < high


def test_the_bootstrap_is_seeded() -> None:
    first, second = [0.0] * 30, [(i * 0.37) ** 0.5 for i in range(30)]

    assert paired_bootstrap(first, second) == paired_bootstrap(first, second)
    assert paired_bootstrap(first, second, seed=1) != paired_bootstrap(first, second, seed=2)


def test_only_questions_answered_in_both_reports_are_paired() -> None:
    before = _report({"steps": [_result(f"q{i}", "steps", correct=True) for i in (1, 2, 3, 4)]})
    after_results = [_result(f"q{i}", "steps", correct=False) for i in (2, 3, 4, 5)]
    after_results[0].error = "POST /v1/query -> 503"  # q2 failed in the second run
    after = _report({"steps": after_results})

    comparison = compare(before, after)

    accuracy = _row(comparison, "steps", "accuracy")
    assert accuracy.n == 2  # q3 and q4; q1 and q5 are in one report only, q2 failed
    assert (accuracy.first, accuracy.second, accuracy.difference) == (1.0, 0.0, -1.0)
    assert comparison.questions == 2 and comparison.left_out == 3


def test_questions_pair_only_within_the_same_mode_and_dataset() -> None:
    steps = _report({"steps": _right(5, right=3)})
    one_call = _report({"one_call": _right(5, "one_call", right=3)})
    other_set = _report({"steps": _right(5, right=3)}, dataset="hotpotqa")

    with pytest.raises(ReportError, match="share no question"):
        compare(steps, one_call)
    with pytest.raises(ReportError, match="squad .* against hotpotqa"):
        compare(steps, other_set)


def test_metrics_match_the_reports_own_summary() -> None:
    # SQuAD 2.0-like: accuracy over the answerable questions, declines over the unanswerable.
    results = _right(6, right=3) + [
        _result("u1", "steps", correct=False, kind="unanswerable", declined=True),
        _result("u2", "steps", correct=False, kind="unanswerable"),
        _result("q9", "steps", correct=True, citations=2, precise=1),
    ]
    report = _report({"steps": results})
    summary = report["summary"][0]

    comparison = compare(report, report)

    # The summary rounds to three decimals.
    accuracy = _row(comparison, "steps", "accuracy")
    declined = _row(comparison, "steps", "declined")
    assert accuracy.n == 7 and accuracy.first == pytest.approx(summary["accuracy"], abs=1e-3)
    assert declined.first == pytest.approx(summary["declined"])
    assert _row(comparison, "steps", "declined").n == 2
    assert _row(comparison, "steps", "citation precision").n == 1  # only q9 cites
    assert _row(comparison, "steps", "latency s").first == pytest.approx(1.0)


def test_a_report_of_another_shape_is_refused() -> None:
    check_report(_report({"steps": _right(2, right=1)}))
    shapes: list[Any] = [[], {"questions": []}, {"dataset": "squad", "questions": [{"id": "q"}]}]
    for not_a_report in shapes:
        with pytest.raises(ReportError):
            check_report(not_a_report)


# The command -------------------------------------------------------------------------------


def _write(path: Path, report: Any) -> Path:
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, ["bench-compare", *map(str, args)])


def test_compare_prints_a_table_per_mode(tmp_path: Path) -> None:
    before = _write(
        tmp_path / "before.json",
        _report({"steps": _right(40, right=10), "one_call": _right(40, "one_call", right=20)}),
    )
    after = _write(
        tmp_path / "after.json",
        _report({"steps": _right(40, right=34), "one_call": _right(40, "one_call", right=20)}),
    )

    result = _invoke(before, after)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("before.json → after.json: squad (train), 40 questions in both\n")
    assert out.index("steps:") < out.index("one_call:")
    assert "| metric | n | first | second | difference | 95% interval | |" in out
    steps, one_call = out.split("one_call:")
    accuracy = next(line for line in steps.splitlines() if line.startswith("| accuracy "))
    assert "| 0.250 | 0.850 | +0.600 |" in accuracy and accuracy.endswith("| higher |")
    assert "| accuracy | 40 | 0.500 | 0.500 | 0 | [0, 0] | within the noise |" in one_call


def test_compare_refuses_a_missing_file(tmp_path: Path) -> None:
    report = _write(tmp_path / "a.json", _report({"steps": _right(3, right=1)}))

    result = _invoke(report, tmp_path / "missing.json")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"cannot read {tmp_path / 'missing.json'}: No such file or directory"
    ]


@pytest.mark.parametrize(
    "text", ["not json at all", '{"summary": []}', '{"dataset": "squad", "questions": [1]}']
)
def test_compare_refuses_a_file_that_is_not_a_bench_report(tmp_path: Path, text: str) -> None:
    report = _write(tmp_path / "a.json", _report({"steps": _right(3, right=1)}))
    other = tmp_path / "notes.json"
    other.write_text(text)

    result = _invoke(report, other)

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{other} is not a `rag bench` report: ")


def test_compare_refuses_reports_without_a_question_in_common(tmp_path: Path) -> None:
    squad = _write(tmp_path / "squad.json", _report({"steps": _right(3, right=1)}))
    hotpot = _write(
        tmp_path / "hotpot.json", _report({"steps": _right(3, right=1)}, dataset="hotpotqa")
    )

    result = _invoke(squad, hotpot)

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "share no question" in lines[0]


def test_bench_itself_is_unchanged() -> None:
    result = CliRunner().invoke(cli, ["bench", "--help"])

    assert result.exit_code == 0
    assert "Ingest a public QA set" in result.stdout and "--modes" in result.stdout
