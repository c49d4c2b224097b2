"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import EmbedderSettings
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
