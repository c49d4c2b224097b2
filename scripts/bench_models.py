"""The model × mode matrix behind the embedded default (docs/models.md).

Runs `rag bench` for every installed catalog model (or --models) on development data only —
../shared/eval-dev and samples of the *-train-* files — in all four modes, each model in its
own process so its peak memory (max RSS, from wait4) is its own. Writes the JSON reports under
bench-results/models/ and the table to docs/models.md (or --out).

    .venv/bin/python scripts/bench_models.py --questions 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from generation.model_files.catalog import CATALOG, DEFAULT_MODEL  # noqa: E402
from generation.model_files.install import is_installed  # noqa: E402

MODES = "steps,single_pass,one_call,closed_book"
DATASETS = {
    "eval-dev": str(REPO.parent / "shared" / "eval-dev"),
    "squad2-train": "squad2",
    "hotpotqa-train": "hotpotqa",
}
P50_LIMIT_MS = 30_000


def run_one(
    model: str, name: str, dataset: str, questions: int, out: Path, retrieval: str
) -> dict[str, Any]:
    stem = out / f"{model}-{name}"
    command = [
        sys.executable, "-m", "app.cli", "bench", dataset, "--split", "train",
        "--questions", str(questions), "--modes", MODES, "--model", model,
        "--max-documents", "60", "--retrieval", retrieval, "--output", str(stem),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)  # noqa: S603
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    report: dict[str, Any] = json.loads(Path(f"{stem}.json").read_text())
    report["retrieval"] = retrieval
    report["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def _f(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| model | data | mode | n | accuracy | EM | F1 | cit. precision | declined "
        "| false abst. | p50 s | p95 s | peak RSS MiB |",
        "|" + " --- |" * 13,
    ]
    lines += [
        f"| {r['model_name']} | {r['data']} | {s['mode']} | {s['questions']} "
        f"| {_f(s['accuracy'])} | {_f(s['exact_match'])} | {_f(s['f1'])} "
        f"| {_f(s['citation_precision'])} | {_f(s['declined'])} "
        f"| {_f(s['false_abstention'])} "
        f"| {_f((s['latency_p50_ms'] or 0) / 1000)} "
        f"| {_f((s['latency_p95_ms'] or 0) / 1000)} | {r['peak_rss_mib']} |"
        for r in reports
        for s in r["summary"]
    ]
    return "\n".join(lines)


def overall(reports: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model and mode: accuracy and p50 pooled over all datasets (question-weighted)."""
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    for r in reports:
        for s in r["summary"]:
            cell = pooled.setdefault(r["model_name"], {}).setdefault(
                s["mode"], {"n": 0, "correct": 0.0, "p50s": 0.0, "runs": 0}
            )
            n = s["answerable"]
            cell["n"] += n
            cell["correct"] += (s["accuracy"] or 0) * n
            cell["p50s"] += (s["latency_p50_ms"] or 0) / 1000
            cell["runs"] += 1
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=6, help="questions per dataset")
    parser.add_argument("--models", default="", help="comma-separated catalog names")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "models-matrix.md")
    parser.add_argument(
        "--retrieval", default="dense", help="the same retrieval for every model (dense, hybrid)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in matrix.json, do the rest"
    )
    args = parser.parse_args()
    models_dir = REPO / "models"
    names = [m for m in args.models.split(",") if m] or [
        m.name for m in CATALOG if is_installed(m, models_dir)
    ]
    results = REPO / "bench-results" / "models"
    results.mkdir(parents=True, exist_ok=True)
    matrix = results / "matrix.json"
    reports: list[dict[str, Any]] = json.loads(matrix.read_text()) if args.resume else []
    done = {(r["model_name"], r["data"]) for r in reports}
    for model in names:
        entry = next(m for m in CATALOG if m.name == model)
        for data, dataset in DATASETS.items():
            if (model, data) in done:
                continue
            print(f"{model} on {data} ...", file=sys.stderr, flush=True)
            report = run_one(model, data, dataset, args.questions, results, args.retrieval)
            report["model_name"], report["data"] = entry.name, data
            reports.append(report)
            matrix.write_text(json.dumps(reports, indent=1))
    pooled = overall(reports)
    lines = [
        "| model | mode | accuracy (pooled) | mean p50 s |",
        "| --- | --- | --- | --- |",
    ]
    winner, best = None, -1.0
    for model, modes in pooled.items():
        for mode, c in modes.items():
            accuracy = c["correct"] / c["n"] if c["n"] else 0.0
            p50 = c["p50s"] / c["runs"]
            lines.append(f"| {model} | {mode} | {accuracy:.2f} | {p50:.1f} |")
            if mode in ("steps", "single_pass") and p50 * 1000 <= P50_LIMIT_MS and accuracy > best:
                winner, best = model, accuracy
    text = (
        f"Generated by `scripts/bench_models.py --questions {args.questions}` on "
        f"{time.strftime('%Y-%m-%d')} (train splits and eval-dev only).\n\n"
        + table(reports)
        + "\n\nPooled over the three data sets:\n\n"
        + "\n".join(lines)
        + f"\n\nBest self-reasoning accuracy within a {P50_LIMIT_MS // 1000} s p50: **{winner}** "
        f"(catalog default: {DEFAULT_MODEL}).\n"
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
