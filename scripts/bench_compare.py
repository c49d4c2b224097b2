"""Two `rag bench` reports of the same questions, compared question by question.

For each mode both reports ran, the paired difference (second − first) of accuracy, exact
match, F1, citation precision (over questions with citations in both), declines and latency,
with a 95% interval from a paired bootstrap over the questions (10,000 resamples, seeded). An
interval that spans zero is a difference the questions cannot tell from noise.

    .venv/bin/python scripts/bench_compare.py bench-results/before.json bench-results/after.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

METRICS = {
    "accuracy": lambda q: float(bool(q["correct"])),
    "exact match": lambda q: float(q["exact_match"] or 0),
    "F1": lambda q: float(q["f1"] or 0),
    "cited precisely": lambda q: (q["precise"] / q["citations"]) if q["citations"] else None,
    "declined": lambda q: float(bool(q["declined"])),
    "latency s": lambda q: q["latency_ms"] / 1000,
}


def paired(first: list[float], second: list[float], rounds: int = 10_000) -> tuple[float, ...]:
    """Mean difference and its 95% bootstrap interval."""
    diffs = [b - a for a, b in zip(first, second, strict=True)]
    rng = random.Random(13)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return statistics.fmean(diffs), means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def by_question(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(q["mode"], q["id"]): q for q in report["questions"] if not q.get("error")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    first, second = (json.loads(p.read_text()) for p in (args.first, args.second))
    a, b = by_question(first), by_question(second)
    shared = sorted(set(a) & set(b))
    if not shared:
        print("the reports share no question", file=sys.stderr)
        return 1
    print(f"{args.first.name} → {args.second.name}: {first['dataset']} ({first['split']})")
    print("| mode | metric | n | first | second | difference | 95% interval |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for mode in sorted({m for m, _ in shared}):
        keys = [k for k in shared if k[0] == mode]
        for name, metric in METRICS.items():
            pairs = [(metric(a[k]), metric(b[k])) for k in keys]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            mean, low, high = paired(xs, ys)
            print(
                f"| {mode} | {name} | {len(pairs)} | {statistics.fmean(xs):.3f} "
                f"| {statistics.fmean(ys):.3f} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
