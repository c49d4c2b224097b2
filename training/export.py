"""Adapter exports: the PEFT directory vLLM loads (--lora-modules, /v1/load_lora_adapter), a
GGUF LoRA for llama.cpp made by llama.cpp's own `convert_lora_to_gguf.py`, and, on request, the
dequantised base as a transformers directory for vLLM (the `train` extra).

The converter is taken from the llama.cpp that the pinned llama-cpp-python sdist vendors (pip's
cache or the package index; nothing is committed): only the scripts and their `gguf-py` are
extracted, once, into a cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from generation.llm.lora_adapters import ADAPTER_FORMAT, MANIFEST

LLAMA_CPP_PYTHON = "0.3.36"  # the pinned llama-cpp-python (pyproject.toml)
_VENDOR = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
_WANTED = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class ExportError(RuntimeError):
    pass


def _cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "rag-service" / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def converter() -> Path:
    """The folder holding convert_lora_to_gguf.py, fetched from the sdist when missing."""
    folder = _cache_dir()
    if (folder / "convert_lora_to_gguf.py").is_file() and (folder / ".complete").is_file():
        return folder
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as tmp:
        done = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments, no shell
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ExportError(
                f"cannot fetch the llama-cpp-python {LLAMA_CPP_PYTHON} sdist for "
                f"convert_lora_to_gguf.py: {done.stderr.strip()[-400:]}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                if not member.name.startswith(_VENDOR) or not member.isfile():
                    continue
                relative = member.name[len(_VENDOR) :]
                if not relative.startswith(_WANTED):
                    continue
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                if source is not None:
                    target.write_bytes(source.read())
    (folder / ".complete").touch()
    return folder


def export_peft(model: Any, folder: Path, base_model: str) -> Path:
    """adapter_config.json + adapter_model.safetensors, what vLLM requires; the weights in
    float16 (half the size; vLLM casts adapters to the served dtype anyway)."""
    model.save_pretrained(str(folder))
    # peft writes an empty model-card template naming the base by its folder; adapter.json is
    # the adapter's real description.
    (folder / "README.md").unlink(missing_ok=True)
    to_float16(folder / "adapter_model.safetensors")
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base_model
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return folder


def to_float16(weights: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {name: t.half().contiguous() for name, t in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # readable by the serving user, like the rest of the folder


def export_gguf(peft_dir: Path, base_config: Any, out_file: Path) -> Path:
    """The GGUF LoRA, converted by llama.cpp's script from the PEFT directory; the script
    reads only the base's config.json (written here without a quantization_config)."""
    tools = converter()
    with tempfile.TemporaryDirectory(prefix="rag-base-config-") as tmp:
        config = base_config.to_dict()
        config.pop("quantization_config", None)
        if not config.get("architectures"):
            # A config made from a GGUF names no architecture; the converter picks its tensor
            # mapping by it (e.g. LlamaForCausalLM for SmolLM2, Qwen2ForCausalLM for Qwen2.5).
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

            config["architectures"] = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]]]
        (Path(tmp) / "config.json").write_text(json.dumps(config, indent=2))
        done = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments, no shell
            [
                sys.executable,
                str(tools / "convert_lora_to_gguf.py"),
                "--base",
                tmp,
                "--outfile",
                str(out_file),
                "--outtype",
                "f16",
                str(peft_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(tools / "gguf-py")},
        )
    if done.returncode != 0 or not out_file.is_file():
        raise ExportError(f"convert_lora_to_gguf.py failed: {done.stderr.strip()[-800:]}")
    return out_file


def export_base(base: Any, folder: Path) -> Path:
    """The dequantised base as a transformers directory (weights, config, tokenizer) for vLLM,
    which serves the PEFT adapter on top of it."""
    from transformers import AutoTokenizer

    path = base.resolved.path
    base.model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(
        str(folder)
    )
    return folder


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = {
        "format": ADAPTER_FORMAT,
        **manifest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
