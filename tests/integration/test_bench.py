"""`rag bench` end to end on real services: a small folder dataset ingested through the REST API
(Postgres, a Celery worker, the real embedder), asked in two modes of the real embedded model,
scored; and the same through the CLI against the running API."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmark.datasets import load_benchmark
from benchmark.runner import BenchRunner, markdown_report
from tests.integration.test_query import BIOS, SMTP

QUESTIONS = [
    {"id": "bios", "question": "What does BIOS stand for?",
     "answers": ["Basic Input/Output System"], "doc": BIOS},
    {"id": "smtp", "question": "What does SMTP stand for?",
     "answers": ["Simple Mail Transfer Protocol"], "doc": SMTP},
]  # fmt: skip


@pytest.fixture
def dataset(tmp_path: Path, corpus: Path) -> Path:
    folder = tmp_path / "tiny"
    (folder / "corpus").mkdir(parents=True)
    for name in (BIOS, SMTP, "foldoc-acid-293.md"):
        (folder / "corpus" / name).write_bytes((corpus / name).read_bytes())
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return folder


def test_bench_scores_every_mode_through_the_api(api: TestClient, dataset: Path) -> None:
    bench = load_benchmark(str(dataset))
    runner = BenchRunner(api, "bench-tiny", top_k=2, modes=("steps", "one_call"))

    runner.ingest(bench)
    report = runner.run(bench).to_json()

    assert report["retrieval_recall_at_k"] == 1.0
    assert [s["mode"] for s in report["summary"]] == ["steps", "one_call"]
    for summary in report["summary"]:
        assert summary["questions"] == 2 and summary["errors"] == 0
        if summary["citations"]:
            assert summary["citation_verbatim"] == 1.0  # every citation is verbatim
    steps = report["summary"][0]
    assert sum(steps["losses"].values()) == 2  # each answerable question is ok or lost somewhere
    assert "self-reasoning (steps)" in markdown_report(report)


def test_bench_cli_writes_json_and_markdown(
    api: TestClient, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app import cli
    from app.cli import http

    # The CLI's client for --against, pointed at the in-process API (a TestClient is an httpx
    # Client), so the command runs as against a deployment.
    monkeypatch.setattr(http, "client", lambda *_: contextlib.nullcontext(api))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli.cli,
        ["bench", str(dataset), "--modes", "one_call", "--top-k", "2",
         "--against", "http://deployment", "--output", str(out)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["against"] == "http://deployment"
    assert report["summary"][0]["questions"] == 2
    assert "one-call RAG" in out.with_suffix(".md").read_text()
