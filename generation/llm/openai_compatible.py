"""OpenAI-compatible backend: vLLM in deployment (or llama.cpp's server).

Async, bounded concurrency (vLLM batches concurrent requests), timeouts and bounded retries with
backoff on connection errors and 5xx. A request's adapter is sent as the model name, which is how
vLLM routes to a LoRA adapter loaded with --enable-lora. A call with `on_text` streams (`"stream":
true`, usage asked for in the last chunk with `stream_options`) and hands each piece of content to
it as the server sends it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from core.errors import RagError
from core.settings import OpenAISettings
from generation.llm.generator import (
    Adapter,
    AdapterNotFound,
    Completion,
    GeneratorUnavailable,
    Message,
    TextSink,
    without_length_bounds,
)

_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_ADAPTER_LIST_TTL_S = 10.0


class OpenAIGenerator:
    adapter_format = "peft"

    def __init__(self, settings: OpenAISettings) -> None:
        self._settings = settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(5.0, settings.timeout_s)),
            limits=httpx.Limits(max_connections=settings.max_concurrency),
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._model = settings.model
        self._served: tuple[float, list[dict[str, Any]]] | None = None

    @property
    def model(self) -> str:
        return self._model or "unknown"

    @property
    def base_names(self) -> frozenset[str]:
        return frozenset({self.model})

    base_file = None  # on the server's host, not this one

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        model = await self._model_for(adapter)
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        if schema is not None:
            body["response_format"] = self._response_format(schema)
        started = time.perf_counter()
        if on_text is None:
            data = await self._post("/chat/completions", body)
        else:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            data = await self._post_streamed("/chat/completions", body, on_text)
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            return Completion(
                text=choice["message"]["content"] or "",
                model=adapter or data.get("model", model),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                cached_tokens=int(details.get("cached_tokens") or 0),
                seconds=time.perf_counter() - started,
                finish_reason=choice.get("finish_reason") or "stop",
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise GeneratorUnavailable(f"the generator sent a malformed reply: {exc!r}") from exc

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self._settings.structured_output == "json_object":  # llama.cpp server's dialect
            return {"type": "json_object", "schema": without_length_bounds(schema)}
        return {
            "type": "json_schema",
            "json_schema": {"name": "step", "schema": schema, "strict": True},
        }

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        attempts = self._settings.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
            try:
                async with self._slots:
                    response = await self._client.post(path, json=body)
            except httpx.TimeoutException:
                raise self._timed_out() from None
            except httpx.TransportError as exc:
                last = self._unreachable(exc)
                continue
            retry = await self._refusal(response, body)
            if retry:
                last = retry
                continue
            try:
                data: dict[str, Any] = response.json()
            except ValueError as exc:
                raise GeneratorUnavailable("the generator sent a reply that is not JSON") from exc
            return data
        raise GeneratorUnavailable(last)

    async def _post_streamed(
        self, path: str, body: dict[str, Any], on_text: TextSink
    ) -> dict[str, Any]:
        """`_post` for a streamed completion: the server-sent chunks read as they arrive, each
        piece of content handed to `on_text`; returns the reply as a completion object. Retried
        as `_post` is until the first piece arrives; a stream that breaks after it is not (the
        reply would start over behind text already handed on)."""
        attempts = self._settings.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
            reply = _StreamedReply()
            try:
                async with self._slots, self._client.stream("POST", path, json=body) as response:
                    if response.status_code >= 400:
                        await response.aread()
                    retry = await self._refusal(response, body)
                    if retry:
                        last = retry
                        continue
                    async for line in response.aiter_lines():
                        if reply.read(line, on_text):
                            break
            except httpx.TimeoutException:
                raise self._timed_out() from None
            except httpx.TransportError as exc:
                last = self._unreachable(exc)
                if reply.started:
                    raise GeneratorUnavailable(f"{last} (the reply broke off)") from exc
                continue
            return reply.completion()
        raise GeneratorUnavailable(last)

    def _timed_out(self) -> GeneratorUnavailable:
        # A timed-out generation is not retried: it would likely time out again.
        return GeneratorUnavailable(
            f"the generator did not answer within {self._settings.timeout_s:g}s"
        )

    def _unreachable(self, exc: Exception) -> str:
        return f"cannot reach the generator at {self._settings.base_url}: {exc.__class__.__name__}"

    async def _refusal(self, response: httpx.Response, body: dict[str, Any]) -> str | None:
        """None for a success; why to try again for a status worth retrying; raises
        AdapterNotFound (404 for a model name) or GeneratorUnavailable for another refusal."""
        if response.status_code in _RETRYABLE_STATUS:
            return f"the generator answered {response.status_code}"
        if response.status_code == 404 and body.get("model"):
            raise AdapterNotFound(str(body["model"]), await self._adapter_names())
        if response.status_code >= 400:
            raise GeneratorUnavailable(
                f"the generator refused the request ({response.status_code}): {response.text[:300]}"
            )
        return None

    async def _served_models(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        if not fresh and self._served and now - self._served[0] < _ADAPTER_LIST_TTL_S:
            return self._served[1]
        try:
            response = await self._client.get("/models")
            response.raise_for_status()
            models: list[dict[str, Any]] = response.json().get("data", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise GeneratorUnavailable(
                f"cannot list the generator's models: {exc.__class__.__name__}"
            ) from exc
        self._served = (now, models)
        if not self._model and models:
            self._model = self._base_of(models)
        return models

    @staticmethod
    def _base_of(models: list[dict[str, Any]]) -> str:
        # vLLM lists LoRA adapters with a "parent" pointing at the base model.
        bases = [m["id"] for m in models if not m.get("parent")]
        return bases[0] if bases else str(models[0]["id"])

    async def _model_for(self, adapter: str | None) -> str:
        if adapter is None:
            if not self._model:
                await self._served_models()
            return self.model
        if adapter not in await self._adapter_names():
            raise AdapterNotFound(adapter, await self._adapter_names())
        return adapter

    async def _adapter_names(self) -> list[str]:
        return [a.name for a in await self.adapters()]

    async def adapters(self) -> list[Adapter]:
        models = await self._served_models()
        base = self._model or (self._base_of(models) if models else "")
        return [
            Adapter(name=str(m["id"]), base_model=str(m.get("parent") or base))
            for m in models
            if m["id"] != base
        ]

    async def register_adapter(self, name: str, path: str) -> Adapter:
        """vLLM's runtime LoRA loading (needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). A name
        that is loaded already is loaded again from `path` (vLLM's `load_inplace`), so that
        registering a name again replaces it. Raises RagError bad_request when vLLM cannot
        load the folder (e.g. it is missing on vLLM's host), GeneratorUnavailable when the
        server cannot be reached or loads no adapters at run time."""
        try:
            response = await self._client.post(
                "/load_lora_adapter",
                json={"lora_name": name, "lora_path": path, "load_inplace": True},
            )
        except httpx.HTTPError as exc:
            raise GeneratorUnavailable(
                f"cannot reach the generator: {exc.__class__.__name__}"
            ) from exc
        if 400 <= response.status_code < 500:
            # vLLM's own refusals carry {"error": {"message": ...}}; a bare 404 is a server
            # without the route (runtime loading off, or not vLLM).
            message = _error_message(response)
            if message is None and response.status_code == 404:
                raise GeneratorUnavailable(
                    "this generator does not support registering adapters at run time"
                )
            raise RagError(
                "bad_request",
                f"the generator cannot load the adapter from {path}: "
                f"{message or response.text[:300]}",
            )
        if response.status_code >= 400:
            raise GeneratorUnavailable(f"the generator refused the adapter: {response.text[:300]}")
        await self._served_models(fresh=True)
        return Adapter(name=name, base_model=self.model)

    async def check(self) -> str:
        try:
            await self._served_models(fresh=True)
        except GeneratorUnavailable:
            return "down"
        return "ok"

    async def aclose(self) -> None:
        await self._client.aclose()


class _StreamedReply:
    """A streamed chat completion as its `data:` lines arrive: the content so far, the finish
    reason, the usage (in the last chunk, with `stream_options.include_usage`; a server that
    does not send it, such as llama-cpp-python's, reports no tokens) and the model."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.model: str | None = None

    @property
    def started(self) -> bool:
        return bool(self.pieces)

    def read(self, line: str, on_text: TextSink) -> bool:
        """Take one line of the stream; True at `data: [DONE]`. Raises GeneratorUnavailable
        for an error the server reports mid-stream or a chunk that is not JSON."""
        if not line.startswith("data:"):
            return False  # blank lines between events, ": ping" comments, event names
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return True
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise GeneratorUnavailable("the generator sent a chunk that is not JSON") from exc
        try:
            if chunk.get("error"):
                error = str(chunk["error"])[:300]
                raise GeneratorUnavailable(f"the generator failed mid-reply: {error}")
            self.model = chunk.get("model") or self.model
            self.usage = chunk.get("usage") or self.usage
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    self.pieces.append(str(text))
                    on_text(str(text))
                self.finish = choice.get("finish_reason") or self.finish
        except (AttributeError, TypeError) as exc:
            raise GeneratorUnavailable(f"the generator sent a malformed chunk: {exc!r}") from exc
        return False

    def completion(self) -> dict[str, Any]:
        """The reply as a non-streamed chat completion object."""
        message = {"content": "".join(self.pieces)}
        data: dict[str, Any] = {
            "choices": [{"message": message, "finish_reason": self.finish}],
            "usage": self.usage,
        }
        if self.model:
            data["model"] = self.model
        return data


def _error_message(response: httpx.Response) -> str | None:
    """The message of an OpenAI-style error body ({"error": {"message": ...}}), if it is one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    return None
