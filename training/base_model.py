"""The trainable base: a catalog GGUF dequantised into a transformers model (float32), with
llama.cpp's own tokenizer and chat template for the ids (the `train` extra)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import LlamaCppSettings
from generation.model_files.resolve import ResolvedModel, resolve_model


@dataclass
class Base:
    resolved: ResolvedModel
    model: Any  # transformers PreTrainedModel
    vocab: Any  # vocabulary-only llama_cpp.Llama
    chat: Any  # generation.llm.llamacpp.ChatRenderer

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def catalog_name(self) -> str:
        """The catalog name (what RAG_GENERATION__LLAMACPP__MODEL takes), else the name."""
        return self.resolved.catalog.name if self.resolved.catalog else self.resolved.name


def load_base(model: str, models_dir: Path, device: str = "cpu") -> Base:
    """Dequantise the GGUF of `model` (a catalog name or a GGUF path) for training.

    transformers' GGUF loader dequantises every tensor when asked to (`GgufConfig(dequantize=
    True)`); without it transformers 5 keeps a GGUF quantizer on the model, which blocks
    training and `save_pretrained`."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, GgufConfig

    from generation.llm.llamacpp import ChatRenderer

    resolved = resolve_model(LlamaCppSettings(model=model, models_dir=models_dir))
    path = resolved.path
    hf = AutoModelForCausalLM.from_pretrained(
        str(path.parent),
        gguf_file=path.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    if getattr(hf, "hf_quantizer", None) is not None:
        raise RuntimeError("transformers kept a GGUF quantizer on the model; cannot train it")
    # A config without quantization_config: what convert_lora_to_gguf.py and vLLM expect.
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    hf.to(device)  # type: ignore[arg-type]  # transformers types .to() oddly
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    if vocab.n_vocab() > hf.config.vocab_size:
        raise RuntimeError(
            f"llama.cpp's vocabulary ({vocab.n_vocab()}) is larger than the model's "
            f"embedding ({hf.config.vocab_size})"
        )
    return Base(resolved, hf, vocab, ChatRenderer(vocab))
