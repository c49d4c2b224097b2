"""The Generator protocol: structured chat completions from some LLM backend.

Two backends: `openai` (generation/llm/openai_compatible.py: any OpenAI-compatible server,
first of all vLLM) and `llamacpp` (generation/llm/llamacpp.py: llama-cpp-python in process with
a model from the offline catalog). `generation/llm/factory.py` chooses one by settings; the
backends import this module's types, never the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import RagError

Message = dict[str, str]
# Receives the reply's text as it is generated, one new piece at a time; it may be called from
# a thread other than the event loop's (the embedded backend generates in a worker thread).
TextSink = Callable[[str], None]


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the backend reused from its prefix/prompt cache instead of computing.
    cached_tokens: int
    seconds: float
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Adapter:
    name: str
    base_model: str


class GeneratorUnavailable(RagError):
    """The generator cannot be reached, timed out, or refused the request."""

    def __init__(self, message: str) -> None:
        super().__init__("generator_unavailable", message)


class AdapterNotFound(RagError):
    def __init__(self, name: str, known: list[str]) -> None:
        listing = ", ".join(known) or "none"
        super().__init__(
            "adapter_not_found", f"unknown adapter {name!r}; served adapters: {listing}"
        )


def without_length_bounds(schema: Any) -> Any:
    """The schema without string length bounds, for llama.cpp's server: its
    grammar engine expands `maxLength` into nested repetitions that make sampling many times
    slower. max_tokens still bounds the output, and the pipeline clips over-long fields."""
    if isinstance(schema, dict):
        return {
            k: without_length_bounds(v)
            for k, v in schema.items()
            if k not in ("maxLength", "minLength")
        }
    if isinstance(schema, list):
        return [without_length_bounds(v) for v in schema]
    return schema


class Generator(Protocol):
    @property
    def model(self) -> str:
        """The base model's name."""
        ...

    @property
    def base_names(self) -> frozenset[str]:
        """The names an adapter's manifest may give the served base model: its model name, and
        for the embedded backend its catalog name as well."""
        ...

    @property
    def base_file(self) -> Path | None:
        """The served model file when it is on this host (the embedded backend), else None."""
        ...

    @property
    def adapter_format(self) -> str:
        """What register_adapter loads: "gguf" (a GGUF LoRA file, llama.cpp) or "peft" (a PEFT
        folder on the generator's host, vLLM)."""
        ...

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        """One chat completion; with `schema`, the reply is constrained to that JSON schema.

        With `on_text`, the reply is streamed: each new piece of its text is handed to
        `on_text` as it is generated (the pieces add up to `Completion.text`), possibly from
        another thread. Without it the backend generates exactly as it always did.

        Raises GeneratorUnavailable when the backend cannot answer, AdapterNotFound for an
        adapter the backend does not serve.
        """
        ...

    async def adapters(self) -> list[Adapter]: ...

    async def register_adapter(self, name: str, path: str) -> Adapter: ...

    async def check(self) -> str:
        """Readiness: "ok" or a short reason."""
        ...

    async def aclose(self) -> None: ...


class UnavailableGenerator:
    """Stands in when the configured backend could not start: every call says why (503)."""

    adapter_format = "gguf"

    def __init__(self, model: str, reason: str) -> None:
        self._model = model
        self._reason = reason

    @property
    def model(self) -> str:
        return self._model

    @property
    def base_names(self) -> frozenset[str]:
        return frozenset({self._model})

    base_file = None

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        raise GeneratorUnavailable(self._reason)

    async def adapters(self) -> list[Adapter]:
        raise GeneratorUnavailable(self._reason)

    async def register_adapter(self, name: str, path: str) -> Adapter:
        raise GeneratorUnavailable(self._reason)

    async def check(self) -> str:
        return f"down: {self._reason}"

    async def aclose(self) -> None:
        return None
