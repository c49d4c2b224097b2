"""A real tiny training run through the CLI, and the adapter registry serving its result.

`rag train trajectories` on a few SQuAD 2.0 train questions (the service's own retrieval and
prompts) -> `rag train adapter` (a LoRA of one layer of the small catalog model, a few optimizer
steps on CPU) -> the PEFT folder vLLM loads and the GGUF LoRA llama.cpp loads -> llama.cpp's
output with the adapter differs from the base -> `rag adapters add/list`, POST and GET
/v1/adapters, a query that names the adapter, and an adapter for another base refused.
Everything is real: the embedder, llama.cpp, torch/peft and llama.cpp's converter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import GenerationSettings, LlamaCppSettings, Settings
from generation.model_files.catalog import SMALL_MODEL, catalog_model
from tests.conftest import MODELS_DIR, REPO
from tests.integration.conftest import new_collection, upload, wait_job

DATASETS = REPO.parent / "shared" / "datasets"
pytestmark = pytest.mark.timeout(900)
RIVER = b"The Amazon discharges more water than any other river in the world."


def rag(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Trajectories and a tiny adapter, made once for this module."""
    pytest.importorskip("peft", reason="the train extra (pip install -e .[train])")
    if not (DATASETS / "squad" / "v2.0-train-half.json").is_file():
        pytest.skip(f"no SQuAD 2.0 train split under {DATASETS}")
    root = tmp_path_factory.mktemp("training")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(root / "data"),
        RAG_GENERATION__LLAMACPP__MODEL=SMALL_MODEL,
        RAG_GENERATION__LLAMACPP__MODELS_DIR=str(MODELS_DIR),
        RAG_GENERATION__ADAPTERS_DIR="",
        TOKENIZERS_PARALLELISM="false",
    )
    done = rag(
        env,
        "train", "trajectories", "--dataset", "squad2", "--out", str(root / "traj"),
        "--limit", "6", "--max-documents", "12", "--data-dir", str(DATASETS),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((root / "traj" / "manifest.json").read_text())
    assert manifest["format"] == "rag-trajectories/1" and manifest["split"] == "train"
    adapter = root / "adapters" / "tiny"
    done = rag(
        env,
        "train", "adapter", "--base", SMALL_MODEL, "--trajectories", str(root / "traj"),
        "--out", str(adapter), "--layers", "0", "--samples-per-stage", "1", "--accumulate", "1",
        "--lr", "0.01", "--max-tokens", "2048", "--models-dir", str(MODELS_DIR),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return adapter, env


def test_training_writes_both_exports_and_a_manifest(trained: tuple[Path, dict[str, str]]) -> None:
    adapter, _ = trained
    manifest = json.loads((adapter / "adapter.json").read_text())
    assert manifest["format"] == "rag-adapter/1"
    assert manifest["base_model"] == SMALL_MODEL and len(manifest["base_sha256"]) == 64
    assert manifest["training"]["optimizer_steps"] >= 1
    assert manifest["trajectories"][0]["dataset"] == "squad2"

    # What vLLM's LoRA loader requires of a PEFT folder.
    config = json.loads((adapter / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] <= 16
    assert config["bias"] == "none" and not config.get("use_dora") and not config.get("use_rslora")
    assert set(config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    from safetensors import safe_open

    with safe_open(str(adapter / "peft" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert all(".layers.0." in k for k in keys), "only the chosen layer is trained"

    # llama.cpp loads the GGUF LoRA and its logits move away from the base's.
    from llama_cpp import Llama

    entry = catalog_model(SMALL_MODEL)
    assert entry is not None
    base_file = entry.path(MODELS_DIR)
    prompt = b"Which river discharges the most water? Answer:"

    def last_logits(lora: str | None) -> list[float]:
        # logits_all: without it llama-cpp-python keeps no logits (it samples inside llama.cpp).
        llm = Llama(str(base_file), lora_path=lora, n_ctx=256, verbose=False, logits_all=True)
        tokens = llm.tokenize(prompt)
        llm.eval(tokens)
        return [float(x) for x in llm.scores[len(tokens) - 1][:2000]]

    base, tuned = last_logits(None), last_logits(str(adapter / "adapter.gguf"))
    assert max(abs(a - b) for a, b in zip(base, tuned, strict=True)) > 1e-3


def test_adapters_register_list_serve_and_refuse_another_base(
    trained: tuple[Path, dict[str, str]],
    make_client: Callable[..., TestClient],
    tmp_path: Path,
) -> None:
    adapter, env = trained
    # Another base: the same files, a manifest naming another model.
    foreign = tmp_path / "foreign"
    shutil.copytree(adapter, foreign)
    manifest = json.loads((foreign / "adapter.json").read_text())
    manifest.update(base_model="qwen2.5-coder-0.5b-instruct", base_sha256="0" * 64)
    (foreign / "adapter.json").write_text(json.dumps(manifest))

    # The CLI registers into the database and lists with the fields the contract names.
    cli_env = {**env, "RAG_DATA_DIR": str(tmp_path / "data")}
    done = rag(cli_env, "adapters", "add", "tiny-cli", str(adapter))
    assert done.returncode == 0, done.stderr
    refused = rag(cli_env, "adapters", "add", "foreign", str(foreign))
    assert refused.returncode == 2
    assert "trained for 'qwen2.5-coder-0.5b-instruct'" in refused.stderr
    listing = rag(cli_env, "adapters", "list", "--json").stdout
    listed = [json.loads(line) for line in listing.splitlines()]
    assert [(a["name"], a["base_model"], a["path"]) for a in listed] == [
        ("tiny-cli", SMALL_MODEL, str(adapter))
    ]

    # A server over the same database and a bundled adapters folder.
    bundled = tmp_path / "bundled"
    shutil.copytree(adapter, bundled / "tiny-bundled")
    settings = Settings(
        data_dir=tmp_path / "data",
        generation=GenerationSettings(
            llamacpp=LlamaCppSettings(model=SMALL_MODEL, models_dir=MODELS_DIR),
            adapters_dir=bundled,
        ),
    )
    client = make_client(settings)
    shown = {a["name"]: a for a in client.get("/v1/adapters").json()["adapters"]}
    assert set(shown) == {"tiny-cli", "tiny-bundled"}
    assert shown["tiny-cli"]["source"] == "registered" and not shown["tiny-cli"]["loaded"]
    assert shown["tiny-bundled"]["source"] == "bundled"
    assert shown["tiny-cli"]["data"][0]["dataset"] == "squad2"
    assert shown["tiny-cli"]["training"]["optimizer_steps"] >= 1

    response = client.post("/admin/v1/adapters", json={"name": "foreign", "path": str(foreign)})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "adapter_base_mismatch"
    response = client.post("/admin/v1/adapters", json={"name": "tiny-api", "path": str(adapter)})
    assert response.status_code == 201, response.text
    assert response.json()["loaded"] is True

    # A query names an adapter registered by the CLI (loaded on first use), or a bundled one.
    collection = new_collection(client, "rivers")
    accepted = upload(client, collection, [("amazon.txt", RIVER)])
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"
    for name in ("tiny-cli", "tiny-bundled"):
        body = {"collection": collection, "question": "Which river is largest?", "adapter": name}
        answer = client.post("/v1/query", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == name
    loaded = {a["name"]: a["loaded"] for a in client.get("/v1/adapters").json()["adapters"]}
    assert loaded == {"tiny-api": True, "tiny-bundled": True, "tiny-cli": True}
