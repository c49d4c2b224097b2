"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import EmbedderSettings, LlamaCppSettings
from generation.generator import Generator
from retrieval.embedders import EmbedderPool

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "eval-dev" / "corpus"


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
    """The real embedded generator (SmolLM2-135M-Instruct via llama.cpp), loaded once."""
    from generation.llamacpp_backend import LlamaCppGenerator

    yield LlamaCppGenerator(LlamaCppSettings())
