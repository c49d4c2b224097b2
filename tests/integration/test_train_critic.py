"""`rag train critic` end to end, tiny: real pairs from the train files, a few optimizer steps of
the real MiniLM on CPU, the int8 ONNX export, and the result loaded and scored as the service
loads the shipped critic. The shipped one took the same command with its defaults
(docs/adapters.md section 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generation.critic import MANIFEST_FILE, MODEL_FILE, AnswerCritic
from tests.conftest import REPO

DATASETS = REPO.parent / "shared" / "datasets"
pytestmark = pytest.mark.timeout(900)


def test_train_critic_writes_a_critic_the_service_loads(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the train extra (pip install -e .[train])")
    if not (DATASETS / "squad" / "v2.0-train-half.json").is_file():
        pytest.skip(f"no train splits under {DATASETS}")
    out = tmp_path / "critic"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "app.cli", "train", "critic", "--out", str(out),
            "--max-pairs", "64", "--threshold", "0.4", "--data-dir", str(DATASETS),
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=800, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["threshold"] == 0.4
    assert manifest["training"]["pairs_seen"] == 64
    assert manifest["training"]["validation"]["pairs"] > 500, "5% of the questions held out"
    assert (out / MODEL_FILE).stat().st_size < 50 * 2**20
    critic = AnswerCritic(out)  # the sha256 in the manifest is the file's
    scores = critic.scores("When was the tower built?", ["It was built in 1889.", "Rivers."])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)

    bad = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", "critic", "--out", str(tmp_path / "x"),
         "--data-dir", str(tmp_path / "nowhere")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "cannot read the datasets" in bad.stderr and "Traceback" not in bad.stderr
