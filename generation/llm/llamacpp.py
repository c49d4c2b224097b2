"""Embedded backend: llama-cpp-python in process, a catalog model or any GGUF with a chat template.

JSON-schema-constrained decoding through a grammar built from the schema. Prompts are rendered
with the model's own chat template and tokenized here, so the backend can tell how many prompt
tokens llama.cpp reuses from the previous evaluation (its KV cache keeps the longest common
prefix): the self-reasoning steps share a prefix on purpose. One model instance is not
thread-safe, so calls are serialized and run off the event loop. A call whose request is
cancelled (its client went away) stops at the next token, so an abandoned answer does not hold
the model for the minutes the rest would take.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Any

from core import foreground
from core.errors import RagError
from core.settings import LlamaCppSettings
from generation.llm.generator import (
    Adapter,
    AdapterNotFound,
    Completion,
    GeneratorUnavailable,
    Message,
    TextSink,
)
from generation.llm.grammar_sampler import make_llama_class
from generation.llm.idle_cores import IdleCores
from generation.model_files.resolve import ModelConfigError, ResolvedModel, resolve_model

log = logging.getLogger(__name__)
_IDLE_CORES = IdleCores()

# llama.cpp's own error lines (say, "unknown model architecture: 'x'"), kept so a model that
# fails to load is refused with llama.cpp's reason rather than only "failed to load".
_LLAMA_ERRORS: deque[str] = deque(maxlen=20)
_log_callback: Any = None


def _capture_llama_errors() -> None:
    """Route llama.cpp's log through a callback that records error lines (and still prints
    them, as llama-cpp-python's own callback does when not verbose). Installed once."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        if level == 3:  # GGML_LOG_LEVEL_ERROR
            line = text.decode("utf-8", "replace").strip()
            if line:
                _LLAMA_ERRORS.append(line)
                print(line, file=sys.stderr, flush=True)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _log_callback = callback  # keep a reference: llama.cpp holds only the C pointer


def schema_grammar(schema: dict[str, Any]) -> Any:
    """The GBNF grammar of a JSON schema, length bounds included: with the service's sampler
    (grammar_sampler.py) a bounded string costs no more than a free one, so a reason of at most
    120 characters ends there instead of running on to be clipped afterwards. Key order
    matters: the grammar emits properties in schema order (e.g. sentence id before its
    reason), so the schema is serialized as built."""
    return _grammar(json.dumps(schema))


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


class ChatRenderer:
    """Chat messages to token ids with the model's own chat template, exactly as serving sends
    them; the trainer (training/) uses the same renderer so training and serving see the same
    ids. `llm` may be a vocabulary-only Llama."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("the model has no chat template")
        eos = llm._model.token_get_text(llm.token_eos())
        bos = llm._model.token_get_text(llm.token_bos())
        self._llm = llm
        self._prompt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._whole = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, add_generation_prompt=False
        )

    def _tokens(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The prompt up to where the model starts its reply."""
        chat: Any = messages
        return self._tokens(self._prompt(messages=chat).prompt)

    def sample_tokens(self, messages: list[Message], reply: str) -> tuple[list[int], list[int]]:
        """The prompt's tokens and the tokens the model should generate after them to give
        `reply`, up to and including the template's end of turn (for training)."""
        chat: Any = messages
        prompt = self._prompt(messages=chat).prompt
        whole = self._whole(messages=[*chat, {"role": "assistant", "content": reply}]).prompt
        rest = whole[len(prompt) :] if whole.startswith(prompt) else ""
        if reply in rest:
            end = rest.index(reply) + len(reply)
            # The reply, then the template's end-of-turn marker (up to the line break after).
            tail = rest[end:].split("\n", 1)[0]
            return self._tokens(prompt), self._tokens(rest[:end] + tail)
        return self._tokens(prompt), [*self._tokens(reply), int(self._llm.token_eos())]


class _Model:
    """One loaded Llama (the base model, or the base model with one LoRA adapter)."""

    def __init__(self, settings: LlamaCppSettings, path: Path, lora_path: str | None) -> None:
        _capture_llama_errors()
        _LLAMA_ERRORS.clear()
        # n_threads 0: as many as other processes leave idle, chosen before each call.
        self.fixed_threads = settings.n_threads
        threads = settings.n_threads or os.cpu_count() or 1
        try:
            self.llm = make_llama_class()(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=settings.seed,
                lora_path=lora_path,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            why = "; ".join(_LLAMA_ERRORS) or str(exc)
            raise GeneratorUnavailable(f"llama.cpp cannot load {path.name}: {why}") from exc
        if not self.llm.metadata.get("tokenizer.chat_template"):
            raise GeneratorUnavailable(f"{path.name} has no chat template")
        self.chat = ChatRenderer(self.llm)
        self.threads = threads
        self.lock = threading.Lock()
        self.repeat_penalty = settings.repeat_penalty

    def complete(
        self,
        messages: list[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        stop: threading.Event | None = None,
        on_text: TextSink | None = None,
    ) -> tuple[str, int, int, int, str]:
        """Generate a reply (text, prompt tokens, completion tokens, cached prompt tokens,
        finish reason). Setting `stop` ends the generation at the next token (or before it
        starts, when set while waiting for the model): finish reason "cancelled". With
        `on_text`, llama.cpp streams and each new piece of text goes to it, from this thread,
        while the model is held."""
        from llama_cpp import StoppingCriteriaList

        stop = stop or threading.Event()
        tokens = self.chat.prompt_tokens(messages)
        grammar = schema_grammar(schema) if schema is not None else None

        def stopped(_ids: Any, _logits: Any) -> bool:
            return stop.is_set()

        with self.lock, foreground.generating():
            if stop.is_set():  # cancelled before it started (say, while another held the model)
                log.info("generation skipped: its request was cancelled before it started")
                return "", 0, 0, 0, "cancelled"
            self._choose_threads()
            cached = _common_prefix(self.llm.input_ids[: self.llm.n_tokens].tolist(), tokens)
            # The last prompt token is always evaluated again to get fresh logits.
            cached = min(cached, len(tokens) - 1)
            result: Any = self.llm.create_completion(
                tokens,
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=self.repeat_penalty,
                grammar=grammar,
                stopping_criteria=StoppingCriteriaList([stopped]),
                stream=on_text is not None,
            )
            if on_text is not None:  # the chunks are generated as they are read: in the lock
                result = self._read_stream(result, on_text, len(tokens))
        choice = result["choices"][0]
        usage = result["usage"]
        finish = choice.get("finish_reason") or "stop"
        if stop.is_set():
            finish = "cancelled"
            log.info(
                "generation stopped after %d of at most %d tokens: its request was cancelled",
                int(usage["completion_tokens"]),
                max_tokens,
            )
        return (
            choice["text"],
            int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]),
            max(cached, 0),
            finish,
        )

    def _read_stream(self, chunks: Any, on_text: TextSink, prompt_tokens: int) -> Any:
        """A streamed completion read to its end, each piece of text handed to `on_text`, as
        the result a call without streaming returns (text, finish reason, usage). Streamed,
        llama-cpp-python reports no usage; the count is the non-streamed one: each token the
        model generated is evaluated before the next is sampled, so the context holds the
        prompt and every completion token but the last of a reply cut off at max_tokens
        (a reply that ends with end-of-turn holds them all; the end-of-turn is not counted)."""
        pieces: list[str] = []
        finish: str | None = None
        for chunk in chunks:
            choice = chunk["choices"][0]
            if choice["text"]:
                pieces.append(choice["text"])
                on_text(choice["text"])
            finish = choice.get("finish_reason") or finish
        evaluated = int(self.llm.n_tokens) - prompt_tokens
        completion = evaluated + (1 if finish == "length" else 0)
        return {
            "choices": [{"text": "".join(pieces), "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max(completion, 0)},
        }

    def _choose_threads(self) -> None:
        if self.fixed_threads:
            return
        threads = _IDLE_CORES.threads()
        if threads != self.threads:
            import llama_cpp

            busy = _IDLE_CORES.cores - threads
            log.info("llama.cpp threads: %d (%d cores busy elsewhere)", threads, busy)
            llama_cpp.llama_set_n_threads(self.llm.ctx, threads, threads)
            self.threads = threads


def load_lora(settings: LlamaCppSettings, base: Path, path: str) -> _Model:
    """The base model with the GGUF LoRA at `path` applied. A wrong path, a file that is no
    LoRA GGUF or one made for another architecture is the caller's mistake (RagError
    bad_request), never a 500."""
    if not Path(path).is_file():
        raise RagError("bad_request", f"adapter file not found: {path}")
    with open(path, "rb") as file:
        # llama.cpp accepts a LoRA path that is no GGUF at all without complaint.
        if file.read(4) != b"GGUF":
            raise RagError("bad_request", f"{path} is not a GGUF file")
    try:
        return _Model(settings, base, path)
    except (GeneratorUnavailable, ValueError, RuntimeError, OSError) as exc:
        raise RagError("bad_request", f"cannot load {path} as a LoRA adapter: {exc}") from exc


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def preflight(settings: LlamaCppSettings) -> ResolvedModel:
    """Resolve and check the configured model before a server binds: the setting names a
    catalog model that is installed or a GGUF file, the file has a chat template, and llama.cpp
    knows its architecture (a vocabulary-only load, well under a second). Raises
    ModelConfigError with the reason."""
    from llama_cpp import Llama

    resolved = resolve_model(settings)
    _capture_llama_errors()
    _LLAMA_ERRORS.clear()
    try:
        Llama(model_path=str(resolved.path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        why = "; ".join(_LLAMA_ERRORS) or str(exc)
        raise ModelConfigError(
            f"llama.cpp cannot load {resolved.path.name} (architecture "
            f"{resolved.gguf.architecture!r}): {why}"
        ) from exc
    return resolved


class LlamaCppGenerator:
    adapter_format = "gguf"

    def __init__(self, settings: LlamaCppSettings) -> None:
        self._settings = settings
        try:
            resolved = resolve_model(settings)
        except ModelConfigError as exc:
            raise GeneratorUnavailable(str(exc)) from exc
        self._path = resolved.path
        self._name = resolved.name
        # What an adapter's manifest may call this base: the display and the catalog name.
        catalog = [resolved.catalog.name] if resolved.catalog else []
        self._names = frozenset({resolved.name, *catalog})
        self._base = _Model(settings, self._path, None)
        self._adapters: dict[str, _Model] = {}
        self._adapter_paths: dict[str, str] = {}

    @property
    def model(self) -> str:
        return self._name

    @property
    def base_names(self) -> frozenset[str]:
        return self._names

    @property
    def base_file(self) -> Path:
        return self._path

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        if adapter is not None and adapter not in self._adapters:
            raise AdapterNotFound(adapter, sorted(self._adapters))
        model = self._adapters[adapter] if adapter else self._base
        started = time.perf_counter()
        stop = threading.Event()
        try:
            text, prompt, completion, cached, finish = await asyncio.to_thread(
                model.complete, messages, schema, max_tokens, stop, on_text
            )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise GeneratorUnavailable(f"the embedded model refused the prompt: {exc}") from exc
        except asyncio.CancelledError:
            # Cancelling the await leaves the thread running: tell it to stop at the next
            # token, so the model is free for the next request at once.
            stop.set()
            raise
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
        """Load a GGUF LoRA adapter on top of the base model: a second Llama over the same
        (memory-mapped) weights, kept for every later request that names the adapter."""
        model = await asyncio.to_thread(load_lora, self._settings, self._path, path)
        self._adapters[name] = model
        self._adapter_paths[name] = path
        return Adapter(name, self.model)

    async def check(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        self._adapters.clear()
