"""The model catalog end to end: the real default model answers with a verified citation, the
serving model is named by /readyz and the response, and a model llama.cpp cannot serve is
refused before `rag serve` binds, with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import LlamaCppSettings, Settings
from generation.llm.generator import Generator
from generation.llm.llamacpp import LlamaCppGenerator, preflight
from generation.model_files.catalog import DEFAULT_MODEL, catalog_model
from generation.model_files.resolve import ModelConfigError
from tests.conftest import MODELS_DIR, REPO
from tests.integration.test_query import BIOS, SMTP, ask, assert_citations_verified, ingest
from tests.unit.test_gguf_file import TEMPLATE, write_gguf

DEFAULT = catalog_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def default_llm() -> Iterator[Generator]:
    assert DEFAULT is not None
    settings = LlamaCppSettings(model=DEFAULT_MODEL, models_dir=MODELS_DIR)
    try:
        preflight(settings)
    except ModelConfigError as exc:
        pytest.fail(f"the test command installs the default model: {exc}")
    yield LlamaCppGenerator(settings)


def test_default_model_answers_with_a_verified_citation(
    pg_settings: Settings,
    worker: object,
    make_client: Callable[..., TestClient],
    default_llm: Generator,
    corpus: Path,
    tmp_path: Path,
) -> None:
    assert DEFAULT is not None
    client = make_client(pg_settings.model_copy(update={"data_dir": tmp_path}), default_llm)
    name = ingest(client, corpus, BIOS, SMTP)

    body = ask(client, name, "What does BIOS stand for?", top_k=2, use_cache=False)

    assert body["model"] == DEFAULT.display_name
    assert body["answer"].strip()
    # Cited from the BIOS entry, verbatim (the answer's quality is what `rag bench` measures).
    assert body["citations"], body
    assert BIOS in {c["filename"] for c in body["citations"]}
    assert_citations_verified(client, name, body)
    ready = client.get("/readyz").json()
    assert ready["model"] == DEFAULT.display_name


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        cwd=REPO,
        env={**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_architecture_llama_cpp_cannot_load_is_refused_at_start(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "strange.gguf",
        {"general.architecture": "notarealarch", "tokenizer.chat_template": TEMPLATE},
    )
    with pytest.raises(ModelConfigError, match="notarealarch"):
        preflight(LlamaCppSettings(model=str(path)))

    done = _serve({"RAG_GENERATION__LLAMACPP__MODEL": str(path)}, tmp_path)
    assert done.returncode == 2
    assert "cannot serve the embedded model" in done.stderr and "notarealarch" in done.stderr


def test_a_base_model_without_chat_template_is_refused_at_start(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "base.gguf", {"general.architecture": "llama"})
    done = _serve({"RAG_GENERATION__LLAMACPP__MODEL": str(path)}, tmp_path)
    assert done.returncode == 2
    assert "has no chat template" in done.stderr


def test_models_list_json_describes_the_catalog() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "models",
            "list",
            "--json",
            "--models-dir",
            str(MODELS_DIR),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(done.stdout)
    by_name = {r["name"]: r for r in rows}
    assert {"name", "sha256", "bytes", "installed", "default"} <= set(rows[0])
    assert by_name[DEFAULT_MODEL]["default"] is True
    assert by_name[DEFAULT_MODEL]["installed"] is True
    assert sum(r["default"] for r in rows) == 1

    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "models",
            "verify",
            DEFAULT_MODEL,
            "--models-dir",
            str(MODELS_DIR),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0 and f"{DEFAULT_MODEL}: ok" in verify.stdout


def test_a_follow_up_is_answered_from_the_documents(
    pg_settings: Settings,
    worker: object,
    make_client: Callable[..., TestClient],
    default_llm: Generator,
    tmp_path: Path,
) -> None:
    """ "When was it built?" after a question about the Kestrel engine: rewritten to stand alone
    from the history, then searched for and answered from the engine's document."""
    samples = REPO / "samples" / "documents"
    client = make_client(pg_settings.model_copy(update={"data_dir": tmp_path}), default_llm)
    name = ingest(client, samples, "kestrel-engine.md", "harbor-station.md", "ledger-service.md")
    first = ask(client, name, "Where was the Kestrel K-7 engine built?", use_cache=False)
    history = [{"question": "Where was the Kestrel K-7 engine built?", "answer": first["answer"]}]

    body = ask(client, name, "When was it first run?", history=history, use_cache=False)

    assert "kestrel" in body["standalone_question"].lower(), body["standalone_question"]
    assert "1931" in body["answer"] + body["analysis"], body
    assert "kestrel-engine.md" in {c["filename"] for c in body["citations"]}
    assert_citations_verified(client, name, body)
    # Asked outright, the standalone question is the same cache entry.
    again = ask(client, name, body["standalone_question"])
    assert again["cached"] and "standalone_question" not in again
