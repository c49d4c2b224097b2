"""GGUF header checks before a model is served: a base model without a chat template, a file
that is not a GGUF, and a cut-off header are refused with the reason."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from core.settings import LlamaCppSettings
from generation.model_files.gguf_file import GgufError, check_servable, read_gguf
from generation.model_files.resolve import ModelConfigError, resolve_model


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, metadata: dict[str, str | int]) -> Path:
    """A header-only GGUF (no tensors) with string and uint32 metadata."""
    body = b""
    for key, value in metadata.items():
        if isinstance(value, int):
            body += _string(key) + struct.pack("<I", 4) + struct.pack("<I", value)
        else:
            body += _string(key) + struct.pack("<I", 8) + _string(value)
    # An array of strings (a vocabulary) the reader must skip.
    vocab = [b"a", b"bc"]
    body += _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(vocab))
    body += b"".join(struct.pack("<Q", len(t)) + t for t in vocab)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata) + 1) + body)
    return path


TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
)


def test_header_metadata_is_read(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m.gguf",
        {
            "general.architecture": "llama",
            "general.name": "Tiny",
            "llama.context_length": 2048,
            "tokenizer.chat_template": TEMPLATE,
        },
    )
    info = read_gguf(path)
    assert (info.architecture, info.name, info.context_length) == ("llama", "Tiny", 2048)
    check_servable(info)


def test_a_base_model_without_chat_template_is_refused(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "base.gguf", {"general.architecture": "gemma3"})
    with pytest.raises(GgufError, match=r"base\.gguf \(gemma3\) has no chat template"):
        check_servable(read_gguf(path))
    with pytest.raises(ModelConfigError, match="no chat template"):
        resolve_model(LlamaCppSettings(model=str(path)))


def test_not_a_gguf_and_a_cut_header_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(GgufError, match="not a GGUF file"):
        read_gguf(tmp_path / "x.gguf")
    whole = write_gguf(tmp_path / "whole.gguf", {"tokenizer.chat_template": TEMPLATE})
    (tmp_path / "cut.gguf").write_bytes(whole.read_bytes()[:40])
    with pytest.raises(GgufError, match="cut off"):
        read_gguf(tmp_path / "cut.gguf")


def test_unknown_names_and_uninstalled_catalog_models_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="neither a catalog model nor a GGUF file"):
        resolve_model(LlamaCppSettings(model="gpt-17"))
    with pytest.raises(ModelConfigError, match="rag models install qwen2.5-coder-0.5b-instruct"):
        resolve_model(LlamaCppSettings(model="qwen2.5-coder-0.5b-instruct", models_dir=tmp_path))
