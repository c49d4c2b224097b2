"""`rag ingest DIR` run again after edits (issue 36): unchanged files skipped, edited ones
replacing their document, `--delete-missing` deleting the documents whose file is gone (listed
first), `--dry-run` listing without doing, `--on-existing keep` keeping both versions.

A real uvicorn server on the embedded default (SQLite, in-process worker, real embedder) with
the FAKE SchemaFollowingGenerator (tests/integration/fakes.py): the CLI is under test, not the
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli


def ingest(server: str, folder: Path, *options: str) -> tuple[int, str, str]:
    args = ["ingest", str(folder), "--collection", "docs", "--url", server, *options]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


def documents(server: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{server}/v1/collections/docs/documents").json()
    return {d["filename"]: d for d in body["documents"]}


def text_of(server: str, document: dict[str, Any]) -> str:
    url = f"{server}/v1/collections/docs/documents/{document['document_id']}"
    return str(httpx.get(url).json()["text"])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    (folder / "guides").mkdir(parents=True)
    (folder / "ports.md").write_text("The staging server listens on port 4711.")
    (folder / "guides" / "setup.md").write_text("Install the agent, then enrol the host.")
    (folder / "old.txt").write_text("The legacy mirror was retired in spring.")
    return folder


def test_a_rerun_updates_changed_files_and_skips_unchanged_ones(server: str, folder: Path) -> None:
    code, out, err = ingest(server, folder)
    assert code == 0, err
    first = documents(server)
    # Documents are named by their path under the folder: two README.md stay apart.
    assert set(first) == {"ports.md", "guides/setup.md", "old.txt"}

    (folder / "ports.md").write_text("The staging server listens on port 9090.")
    code, out, err = ingest(server, folder)
    assert code == 0, err
    assert "unchanged: 2 files" in out
    assert "changed: ports.md (replaces its document when ready)" in out
    assert "this run: 1 done, 0 failed, 0 duplicate, 2 unchanged, 1 replaced" in out
    now = documents(server)
    assert set(now) == set(first)
    assert now["ports.md"]["document_id"] != first["ports.md"]["document_id"]
    assert text_of(server, now["ports.md"]) == "The staging server listens on port 9090."
    assert now["old.txt"]["document_id"] == first["old.txt"]["document_id"]

    code, out, err = ingest(server, folder)
    assert code == 0, err
    assert "unchanged: 3 files" in out
    assert documents(server) == now


def test_delete_missing_lists_first_and_dry_run_changes_nothing(server: str, folder: Path) -> None:
    assert ingest(server, folder)[0] == 0
    before = documents(server)
    (folder / "old.txt").unlink()
    (folder / "ports.md").write_text("The staging server listens on port 9090.")
    (folder / "new.md").write_text("Backups run nightly at two.")

    code, out, err = ingest(server, folder)
    assert code == 0, err
    assert "1 document with no file here (kept; --delete-missing deletes them): old.txt" in out
    assert "old.txt" in documents(server)

    (folder / "later.md").write_text("Certificates renew every ninety days.")
    code, out, err = ingest(server, folder, "--delete-missing", "--dry-run")
    assert code == 0, err
    assert "new: later.md" in out
    assert "missing: old.txt (would be deleted)" in out
    assert out.strip().endswith("dry run: nothing was changed")
    assert set(documents(server)) == set(before) | {"new.md"}

    code, out, err = ingest(server, folder, "--delete-missing")
    assert code == 0, err
    assert out.index("missing: old.txt (is deleted)") < out.index("this run:")
    assert "this run: 1 done, 0 failed, 0 duplicate, 3 unchanged, 1 deleted" in out
    assert set(documents(server)) == {"ports.md", "guides/setup.md", "new.md", "later.md"}


def test_a_renamed_file_is_uploaded_again_under_its_new_name(server: str, folder: Path) -> None:
    assert ingest(server, folder)[0] == 0
    (folder / "old.txt").rename(folder / "retired.txt")
    code, out, err = ingest(server, folder, "--delete-missing")
    assert code == 0, err
    # The old name's document is deleted first, so the same bytes are not a duplicate of it.
    assert "this run: 1 done, 0 failed, 0 duplicate" in out
    after = documents(server)
    assert set(after) == {"ports.md", "guides/setup.md", "retired.txt"}
    assert after["retired.txt"]["status"] == "ready"


def test_on_existing_keep_keeps_both_versions(server: str, folder: Path) -> None:
    assert ingest(server, folder)[0] == 0
    (folder / "ports.md").write_text("The staging server listens on port 9090.")
    code, out, err = ingest(server, folder, "--on-existing", "keep")
    assert code == 0, err
    assert "changed: ports.md (is kept beside the old version)" in out
    body = httpx.get(f"{server}/v1/collections/docs/documents").json()["documents"]
    assert sorted(d["filename"] for d in body) == [
        "guides/setup.md",
        "old.txt",
        "ports.md",
        "ports.md",
    ]


def test_a_missing_directory_says_so(server: str, tmp_path: Path) -> None:
    code, out, err = ingest(server, tmp_path / "nowhere")
    assert code == 1
    assert f"no such directory: {tmp_path / 'nowhere'}" in err
