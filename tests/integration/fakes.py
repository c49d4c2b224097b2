"""Labelled test doubles shared by integration tests."""

from __future__ import annotations

import json
from typing import Any

from core.errors import RagError
from generation.llm.generator import Adapter, Completion, Message, TextSink


def minimal_instance(schema: dict[str, Any]) -> Any:
    """The smallest value that satisfies the (simple) JSON schemas the pipeline's steps use."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {k: minimal_instance(properties[k]) for k in schema.get("required", properties)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    return "x"


class SchemaFollowingGenerator:
    """FAKE generator, labelled as such: it answers every step with the smallest reply its
    JSON schema allows, instantly. The fuzzer sends hundreds of queries; the real embedded model
    takes seconds each, and what is under test is the HTTP surface, not the model."""

    model = "schema-following-fake"
    adapter_format = "gguf"
    base_file = None

    @property
    def base_names(self) -> frozenset[str]:
        return frozenset({self.model})

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        text = json.dumps(minimal_instance(schema or {"type": "string"}))
        return Completion(text, self.model, 10, 5, 0, 0.0)

    async def adapters(self) -> list[Adapter]:
        return []

    async def register_adapter(self, name: str, path: str) -> Adapter:
        raise RagError("bad_request", f"cannot load adapter {name!r} from {path!r}")

    async def check(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        return None


class NothingRelevant(SchemaFollowingGenerator):
    """FAKE generator, labelled as such: judges every retrieved chunk not relevant, instantly.
    For tests of what surrounds the model (the query cache across an embedder switch) where
    the real model would make each uncached query take tens of seconds. When the answer critic
    overrules the verdicts (it finds a sentence that states the answer), the later steps get
    the smallest reply their schema allows."""

    model = "fake-nothing-relevant"

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        keys = list((schema or {}).get("properties", {}))
        if not keys or not all(k.startswith("document_") for k in keys):
            return await super().generate(
                messages, schema=schema, max_tokens=max_tokens, adapter=adapter, on_text=on_text
            )
        reply = {k: {"reason": "not about it", "relevant": False} for k in keys}
        return Completion(json.dumps(reply), self.model, 10, 5, 0, 0.0)
