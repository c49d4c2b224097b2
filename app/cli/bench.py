"""`rag bench` and `rag eval`: answer, citation and abstention quality of each mode, through
the service's REST API (benchmark/ holds the datasets, scoring and runner); `rag bench-compare`:
two of their reports, question by question."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import http

ModesOption = Annotated[
    str,
    typer.Option(
        help="Comma-separated modes: steps, single_pass, one_call, closed_book; MODE@ADAPTER "
        "asks in MODE with that registered LoRA adapter."
    ),
]
AgainstOption = Annotated[
    str | None,
    typer.Option(
        "--against",
        "--url",
        help="Measure a running service at this URL (default: an in-process embedded one).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Embedded model for the in-process service (catalog name or GGUF)."),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        help="Write the report here: OUTPUT.json and OUTPUT.md (default: bench-results/)."
    ),
]


def bench(
    dataset: Annotated[
        str,
        typer.Argument(help="squad, squad2, hotpotqa, scifact, or a folder with questions.jsonl."),
    ],
    split: Annotated[
        str, typer.Option(help="train (to tune on) or benchmark (to report).")
    ] = "train",
    questions: Annotated[int | None, typer.Option(help="Sample this many questions.")] = 20,
    modes: ModesOption = "steps,one_call",
    top_k: Annotated[int, typer.Option("--top-k", help="Chunks each question retrieves.")] = 5,
    holdout: Annotated[
        float, typer.Option(help="Withhold the gold documents of this share of questions.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 13,
    max_documents: Annotated[
        int | None,
        typer.Option(help="Cap the collection: gold documents plus random distractors."),
    ] = 200,
    data_dir: Annotated[Path, typer.Option(help="Folder of the public datasets.")] = Path(
        "../shared/datasets"
    ),
    against: AgainstOption = None,
    key: http.KeyOption = "",
    model: ModelOption = None,
    retrieval: Annotated[
        str | None, typer.Option(help="Retrieval per request (dense, hybrid, ...), if supported.")
    ] = None,
    output: OutputOption = None,
    record_eval: Annotated[
        Path | None,
        typer.Option(
            help="Also store the summary in this adapter folder's adapter.json (eval), "
            "keyed by dataset, split, size and seed."
        ),
    ] = None,
) -> None:
    """Ingest a public QA set into a fresh collection, ask every question in every mode, and
    report accuracy, EM/F1, citation precision, abstention, latency and where answers were lost.
    """
    from benchmark.datasets import load_benchmark

    if split not in ("train", "benchmark"):
        typer.echo("--split is train or benchmark", err=True)
        raise typer.Exit(2)
    try:
        bench_set = load_benchmark(
            dataset,
            split=split,  # type: ignore[arg-type]
            questions=questions,
            seed=seed,
            data_dir=data_dir,
            holdout=holdout,
            max_documents=max_documents,
        )
    except (ValueError, OSError) as exc:
        typer.echo(f"cannot load {dataset}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if split == "benchmark":
        typer.echo("benchmark split: report these figures, do not tune on them", err=True)
    extra = {"retrieval": retrieval} if retrieval else {}
    if record_eval is not None and not (record_eval / "adapter.json").is_file():
        typer.echo(f"--record-eval: {record_eval} has no adapter.json", err=True)
        raise typer.Exit(2)
    report = run_benchmark(bench_set, modes, top_k, against, key, model, output, extra)
    if record_eval is not None:
        from generation.llm.lora_adapters import record_eval as record

        name = f"{bench_set.name}/{split}/n{len(bench_set.questions)}/seed{seed}"
        record(record_eval, name, report)
        typer.echo(f"recorded {name} in {record_eval / 'adapter.json'}", err=True)


def evaluate(
    corpus: Annotated[Path, typer.Option(help="Folder of documents to ingest.")],
    questions: Annotated[Path, typer.Option(help="JSON lines: question, answers, doc.")],
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    modes: ModesOption = "closed_book,one_call,steps",
    against: AgainstOption = None,
    key: http.KeyOption = "",
    model: ModelOption = None,
    output: OutputOption = None,
) -> None:
    """Ingest CORPUS, then report recall@k and answer/citation quality for each mode
    (the same runner and scoring as `rag bench`, on your own folder and questions)."""
    from benchmark.datasets import load_folder

    try:
        bench_set = load_folder(corpus, questions)
    except (ValueError, OSError, KeyError) as exc:
        typer.echo(f"cannot load {corpus} / {questions}: {exc}", err=True)
        raise typer.Exit(2) from exc
    bench_set.questions = bench_set.questions[:limit]
    run_benchmark(bench_set, modes, top_k, against, key, model, output, {})


def compare(
    first: Annotated[Path, typer.Argument(help="The report to compare from (its .json).")],
    second: Annotated[Path, typer.Argument(help="The report to compare to, same questions.")],
) -> None:
    """Compare two `rag bench` / `rag eval` reports of the same questions: per mode and metric,
    the paired difference (second − first) with a 95% bootstrap interval over the questions."""
    from benchmark.comparison import ReportError, check_report, markdown_table
    from benchmark.comparison import compare as compare_reports

    reports = []
    for path in (first, second):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            check_report(report)
        except OSError as exc:
            typer.echo(f"cannot read {path}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and ReportError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            typer.echo(f"{path} is not a `rag bench` report: {reason}", err=True)
            raise typer.Exit(2) from exc
        reports.append(report)
    try:
        comparison = compare_reports(reports[0], reports[1])
    except ReportError as exc:
        typer.echo(f"cannot compare {first} and {second}: {exc}", err=True)
        raise typer.Exit(2) from exc
    left_out = comparison.left_out
    typer.echo(
        f"{first.name} → {second.name}: {comparison.dataset} ({comparison.split}), "
        f"{comparison.questions} questions in both"
        + (f"; {left_out} answers left out (in one report only, or failed)" if left_out else "")
        + "\n"
    )
    typer.echo(markdown_table(comparison))


def _log_result(r: Any) -> None:
    """One line per answered question on stderr (a log when the progress bar is not shown)."""
    if r.error:
        verdict = f"error {r.error[:120]}"
    elif r.kind != "answerable":
        verdict = "declined" if r.declined else f"answered ({r.kind}): {r.answer[:60]!r}"
    else:
        verdict = ("right" if r.correct else "wrong") + (f" [{r.loss}]" if r.loss else "")
        verdict += f": {r.answer[:60]!r}"
    typer.echo(f"{r.mode} {r.id}: {verdict} ({r.latency_ms / 1000:.1f} s)", err=True)


def run_benchmark(
    bench_set: Any,
    modes: str,
    top_k: int,
    against: str | None,
    key: str,
    model: str | None,
    output: Path | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    from rich.progress import Progress

    from benchmark.runner import BenchError, BenchRunner, markdown_report

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    collection = f"bench-{bench_set.name}-{uuid.uuid4().hex[:8]}"[:64]
    n = len(bench_set.questions)
    typer.echo(
        f"{bench_set.name} ({bench_set.split}): {len(bench_set.documents)} documents, "
        f"{n} questions, modes {', '.join(mode_list)}",
        err=True,
    )
    if against and model:
        typer.echo("--model applies to the in-process service only; ignoring it", err=True)
    try:
        with http.connect(against, key, None if against else model) as client, Progress() as bar:
            tasks = {"upload": bar.add_task("ingest", total=len(bench_set.documents))}
            tasks["search"] = bar.add_task("search", total=n)
            for mode in mode_list:
                tasks[mode] = bar.add_task(mode, total=n)
            runner = BenchRunner(
                client,
                collection,
                top_k=top_k,
                modes=mode_list,
                progress=lambda stage, k: bar.advance(tasks[stage], k),
                extra=extra,
                on_result=_log_result,
            )
            ingest_s = runner.ingest(bench_set)
            report = runner.run(bench_set, ingest_s).to_json()
    except (BenchError, ValueError) as exc:
        typer.echo(f"benchmark failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    report["against"] = against or "in-process embedded service"
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    table = markdown_report(report)
    typer.echo(table)
    stem = (
        output or Path("bench-results") / f"{bench_set.name}-{bench_set.split}-{int(time.time())}"
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Not with_suffix: a stem like "qwen2.5-coder-1.5b-…" has dots of its own.
    json_path, md_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(table + "\n")
    typer.echo(f"wrote {json_path} and {md_path}", err=True)
    return report
