"""Two `rag bench` reports of the same questions, compared question by question.

A benchmark of 20–200 questions moves by several points between two runs of one configuration,
so a difference between two configurations means something only next to its uncertainty. Each
question is answered by both, so the comparison is paired: per mode and metric, the mean of the
per-question differences (second − first), with a 95% interval from a bootstrap that resamples
questions (10,000 resamples, seeded, so the same reports always give the same interval). An
interval that holds zero is a difference these questions cannot tell from noise.

The metrics follow the report's own summary (benchmark/runner.py), so the "first" and "second"
columns match the `rag bench` tables: accuracy, exact match, F1, citation precision and false
abstention over answerable questions, declines over unanswerable ones, mean latency over all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ROUNDS = 10_000
SEED = 13
LEVEL = 0.95

# A bench report's questions entry, as BenchReport.to_json writes it (asdict(QuestionResult)).
Question = Mapping[str, Any]
# (dataset, mode, question id): a question is the same question only in the same set and mode.
QuestionKey = tuple[str, str, str]

_REQUIRED = (
    "id",
    "mode",
    "correct",
    "exact_match",
    "f1",
    "declined",
    "citations",
    "precise",
    "latency_ms",
)


class ReportError(ValueError):
    """Something is not a `rag bench` report, or two reports cannot be compared (the message
    says which, in one line)."""


def _answerable(q: Question) -> bool:
    # Reports written before questions had a kind held answerable questions only.
    return str(q.get("kind", "answerable")) == "answerable"


def _on_answerable(value: Callable[[Question], float | None]) -> Callable[[Question], float | None]:
    return lambda q: value(q) if _answerable(q) else None


# Name shown -> the question's value, or None where the metric does not apply to the question.
METRICS: dict[str, Callable[[Question], float | None]] = {
    "accuracy": _on_answerable(lambda q: float(bool(q["correct"]))),
    "exact match": _on_answerable(lambda q: float(q["exact_match"] or 0)),
    "F1": _on_answerable(lambda q: float(q["f1"] or 0)),
    # Per question, so over the questions that cite at all: a mean of per-answer precisions.
    "citation precision": _on_answerable(
        lambda q: q["precise"] / q["citations"] if q["citations"] else None
    ),
    "declined": lambda q: None if _answerable(q) else float(bool(q["declined"])),
    "false abstention": _on_answerable(lambda q: float(bool(q["declined"]))),
    "latency s": lambda q: float(q["latency_ms"]) / 1000,
}


@dataclass(frozen=True)
class MetricDifference:
    """One metric of one mode over the `n` questions where it applies in both reports."""

    mode: str
    metric: str
    n: int
    first: float
    second: float
    difference: float  # mean of the per-question (second − first)
    low: float
    high: float

    @property
    def within_noise(self) -> bool:
        """The interval holds zero: the questions cannot tell the two apart."""
        return self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class Comparison:
    """Every mode both reports ran, metric by metric, in mode order then METRICS order."""

    dataset: str
    split: str
    questions: int  # question ids answered without error in both reports, in some mode
    left_out: int  # (mode, question) answers in one report only, or failed in either
    rows: tuple[MetricDifference, ...]

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(r.mode for r in self.rows))


def check_report(report: Any) -> None:
    """Raise ReportError unless `report` has the shape BenchReport.to_json writes: a dataset
    name and a list of per-question results with the fields the metrics read."""
    if not isinstance(report, dict) or not isinstance(report.get("questions"), list):
        raise ReportError("no list of questions")
    if not isinstance(report.get("dataset"), str):
        raise ReportError("no dataset name")
    for q in report["questions"]:
        if not isinstance(q, dict):
            raise ReportError("a question entry is not an object")
        missing = [k for k in _REQUIRED if k not in q]
        if missing:
            raise ReportError(f"question {q.get('id', '?')} has no {', '.join(missing)}")


def by_question(report: Mapping[str, Any]) -> dict[QuestionKey, Question]:
    """The report's questions answered without error, by (dataset, mode, question id)."""
    dataset = str(report["dataset"])
    return {
        (dataset, str(q["mode"]), str(q["id"])): q
        for q in report["questions"]
        if not q.get("error")
    }


def paired_bootstrap(
    first: Sequence[float],
    second: Sequence[float],
    *,
    rounds: int = ROUNDS,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """The mean of the paired differences (second − first) and its `level` percentile
    interval from `rounds` bootstrap resamples of the pairs.

    The pairs are resampled together (one question, both answers), which is what makes the
    interval narrow where both configurations get the same questions right. Deterministic for
    a given seed; identical inputs give (0, 0, 0). Raises ValueError on empty or unequal inputs.
    """
    if len(first) != len(second):
        raise ValueError(f"{len(first)} first values against {len(second)} second ones")
    if not first:
        raise ValueError("no pairs to compare")
    diffs = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    n = len(diffs)
    rng = np.random.default_rng(seed)
    # In chunks, so a few thousand questions stay within tens of megabytes.
    chunk = max(1, 1_000_000 // n)
    means = np.concatenate(
        [
            diffs[rng.integers(0, n, size=(min(chunk, rounds - start), n))].mean(axis=1)
            for start in range(0, rounds, chunk)
        ]
    )
    means.sort()
    tail = (1 - level) / 2
    low = float(means[int(tail * rounds)])
    high = float(means[int((1 - tail) * rounds) - 1])
    return float(diffs.mean()), low, high


def compare(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    *,
    rounds: int = ROUNDS,
    seed: int = SEED,
) -> Comparison:
    """Pair two checked reports by (dataset, mode, question id) and compare every metric of
    every mode they share; a metric is left out of a mode where no pair has a value for it.

    Raises ReportError when the reports have no question in common (different datasets,
    samples or modes, or every shared question failed in one of them).
    """
    a, b = by_question(first), by_question(second)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ReportError(
            f"the reports share no question ({first['dataset']} modes "
            f"{_modes(first)} against {second['dataset']} modes {_modes(second)})"
        )
    everything = set(_keys(first)) | set(_keys(second))
    shared_modes = {k[1] for k in shared}
    rows = []
    # Modes in the first report's order (the order they were asked in).
    for mode in dict.fromkeys(k[1] for k in _keys(first) if k[1] in shared_modes):
        keys = [k for k in shared if k[1] == mode]
        for name, metric in METRICS.items():
            pairs = [(metric(a[k]), metric(b[k])) for k in keys]
            xs = [x for x, y in pairs if x is not None and y is not None]
            ys = [y for x, y in pairs if x is not None and y is not None]
            if not xs:
                continue
            mean, low, high = paired_bootstrap(xs, ys, rounds=rounds, seed=seed)
            rows.append(
                MetricDifference(
                    mode, name, len(xs), float(np.mean(xs)), float(np.mean(ys)), mean, low, high
                )
            )
    return Comparison(
        str(first["dataset"]),
        str(first.get("split", "")),
        len({k[2] for k in shared}),
        len(everything) - len(shared),
        tuple(rows),
    )


def _keys(report: Mapping[str, Any]) -> list[QuestionKey]:
    """Every (dataset, mode, id) of the report in its order, failed questions included."""
    return [(str(report["dataset"]), str(q["mode"]), str(q["id"])) for q in report["questions"]]


def _modes(report: Mapping[str, Any]) -> str:
    return ",".join(dict.fromkeys(str(q["mode"]) for q in report["questions"])) or "none"


def _signed(value: float) -> str:
    # "+0.000" reads as a change; an exact zero is shown as one.
    return "0" if value == 0 else f"{value:+.3f}"


def markdown_table(comparison: Comparison) -> str:
    """One Markdown table per mode: metric, n, first, second, difference, 95% interval, and
    "within the noise" where the interval holds zero (otherwise whether second is higher)."""
    lines: list[str] = []
    for mode in comparison.modes:
        rows = [r for r in comparison.rows if r.mode == mode]
        lines += [
            f"{mode}:",
            "",
            f"| metric | n | first | second | difference | {LEVEL:.0%} interval | |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for r in rows:
            verdict = "within the noise" if r.within_noise else "higher" if r.low > 0 else "lower"
            lines.append(
                f"| {r.metric} | {r.n} | {r.first:.3f} | {r.second:.3f} | {_signed(r.difference)} "
                f"| [{_signed(r.low)}, {_signed(r.high)}] | {verdict} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")
