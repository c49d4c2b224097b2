"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import EmbedderSettings, LlamaCppSettings
from generation.llm.generator import Generator
from generation.model_files.catalog import SMALL_MODEL
from retrieval.embedders import EmbedderPool

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "eval-dev" / "corpus"
MODELS_DIR = REPO / "models"
# Tests use the small catalog model where speed matters (every app the tests start, and the
# subprocesses they spawn, see these); test_default_model.py runs the real default end to end.
# The test command installs both (scripts/test.sh).
os.environ.setdefault("RAG_GENERATION__LLAMACPP__MODEL", SMALL_MODEL)
os.environ.setdefault("RAG_GENERATION__LLAMACPP__MODELS_DIR", str(MODELS_DIR))
# The shipped adapters (adapters/) are for the small model; tests that want them say so.
os.environ.setdefault("RAG_GENERATION__ADAPTERS_DIR", "")


@pytest.fixture(scope="session")
def embedders() -> Iterator[EmbedderPool]:
    """The real bundled embedder, loaded once for the whole run and shared by app instances."""
    pool = EmbedderPool(EmbedderSettings())
    pool.get("all-MiniLM-L6-v2")
    yield pool


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the dev corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def llm() -> Iterator[Generator]:
    """The real embedded generator (the small catalog model via llama.cpp), loaded once."""
    from generation.llm.llamacpp import LlamaCppGenerator

    yield LlamaCppGenerator(LlamaCppSettings(model=SMALL_MODEL, models_dir=MODELS_DIR))
