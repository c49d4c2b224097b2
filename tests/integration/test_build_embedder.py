"""`rag models build-embedder` end to end: the torch MiniLM exported and quantized to int8
products, and the result the same encoder as the shipped file (retrieval/int8_export.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.settings import EmbedderSettings
from retrieval import int8_export
from retrieval.embedders import EmbedderSpec, OnnxMiniLMEmbedder
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(600)

TEXTS = [
    "BIOS stands for Basic Input/Output System, the firmware that starts a PC.",
    "SMTP is the protocol that moves mail between servers.",
    "word " * 300,
]


def encoder(path: Path) -> OnnxMiniLMEmbedder:
    settings = EmbedderSettings()
    spec = EmbedderSpec(int8_export.EMBEDDER_ID, 384, "onnx", str(path))
    return OnnxMiniLMEmbedder(spec, batch_size=settings.batch_size, num_threads=0)


def test_build_embedder_reproduces_the_shipped_encoder(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the train extra (pip install -e .[train])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "models", "build-embedder", "--out", str(tmp_path)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / int8_export.MANIFEST_FILE).read_text())
    built = int8_export.shipped_path(tmp_path)
    assert built is not None and manifest["sha256"] in done.stdout
    shipped = int8_export.shipped_path()
    assert shipped is not None
    # Same versions give the same bytes; other onnx/onnxruntime versions the same encoder.
    a, b = encoder(built).embed_documents(TEXTS), encoder(shipped).embed_documents(TEXTS)
    assert np.all(np.sum(a * b, axis=1) > 0.999)
