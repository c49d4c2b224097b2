"""The client commands as a new user meets them: one line when the service is down, skipped
and refused files listed, per-file counts, labelled answers, streamed steps.

A real uvicorn server on the embedded default (SQLite, in-process worker, real embedder) with
the FAKE SchemaFollowingGenerator (tests/integration/fakes.py): the CLI is under test, not the
model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run
from tests.integration.services import free_port


@pytest.mark.parametrize("command", [["search", "x"], ["ask", "x"], ["ingest", "."]])
def test_a_stopped_service_gets_one_line_not_a_traceback(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(*command, "--collection", "c", "--url", url)
    assert code == 1
    assert err.strip().splitlines() == [
        f"cannot reach {url}: connection refused; is `rag serve` running "
        "(or --url / RAG_URL wrong)?"
    ]
    assert "Traceback" not in out + err


def test_ingest_lists_skipped_and_refused_files_and_counts(server: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "copra.md").write_text("Zanzibar exported copra in the nineteenth century.")
    (folder / "bios.txt").write_text("The BIOS starts the computer and loads the boot sector.")
    (folder / "again.txt").write_text("The BIOS starts the computer and loads the boot sector.")
    (folder / "empty.txt").write_text("")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n")
    code, out, err = run("ingest", str(folder), "--collection", "docs", "--url", server)
    assert code == 0, err
    assert "skipped: logo.png: unsupported type (.png)" in out
    assert "refused: empty.txt: the file is empty" in err
    assert "docs: 2 documents" in out
    assert "this run: 2 done, 1 failed, 1 duplicate" in out


def test_ask_prints_labels_and_streams_steps(server: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "copra.md").write_text("Zanzibar exported copra in the nineteenth century.")
    assert run("ingest", str(folder), "--collection", "docs", "--url", server)[0] == 0

    code, out, err = run(
        "ask", "What did Zanzibar export?", "--collection", "docs", "--url", server
    )
    assert code == 0, err
    assert out.startswith("Answer: ")
    code, out, err = run(
        "ask", "What did Zanzibar export?", "--collection", "docs", "--url", server,
        "--stream", "--no-cache", "--top-k", "3",
    )  # fmt: skip
    assert code == 0, err
    steps = [line for line in err.splitlines() if line.startswith("·")]
    assert steps[0].startswith("· retrieved 1 passages")
    assert any(s.startswith("· relevant:") for s in steps)
    assert out.startswith("Answer: ") and "(cached)" not in out
