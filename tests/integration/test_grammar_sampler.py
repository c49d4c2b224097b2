"""The service's grammar sampler (generation/llm/grammar_sampler.py) on a real model: the same
replies as llama-cpp-python's own grammar chain, rejected tokens resampled, never invalid JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from generation.llm import grammar_sampler
from generation.llm.generator import Message
from generation.llm.llamacpp import ChatRenderer, schema_grammar
from generation.model_files.catalog import SMALL_MODEL, catalog_model
from generation.reasoning import prompts
from retrieval.search import Hit
from tests.conftest import MODELS_DIR

QUESTION = "What does SMTP stand for?"
FILES = (
    "foldoc-simple-mail-transfer-protocol-245.md",
    "foldoc-basic-input-output-system-20.md",
    "foldoc-acid-293.md",
)


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[Any, Any]]:
    """llama-cpp-python's own Llama and the service's, on the small catalog model."""
    from llama_cpp import Llama

    entry = catalog_model(SMALL_MODEL)
    assert entry is not None
    path = str(MODELS_DIR / entry.filename)
    options: dict[str, Any] = {"n_ctx": 2048, "n_threads": 2, "verbose": False, "seed": 0}
    yield (
        Llama(model_path=path, **options),
        grammar_sampler.make_llama_class()(model_path=path, **options),
    )


def step_calls(corpus: Path) -> list[tuple[list[Message], dict[str, Any]]]:
    hits = []
    for i, name in enumerate(FILES, 1):
        text = (corpus / name).read_text()[:800]
        hits.append(Hit(i, f"d{i}", name, text, 1.0, 0, len(text)))
    passages = prompts.make_passages(hits)
    system = prompts.system_message(QUESTION, passages)
    quotes = [passages[0].sentence_text(0)]
    return [
        (
            prompts.relevance_messages(system, QUESTION, passages),
            prompts.relevance_schema(passages, 120),
        ),
        (
            prompts.evidence_messages(system, QUESTION, passages[:2], 3),
            prompts.evidence_schema(passages[:2], 3, 120),
        ),
        (
            prompts.analysis_messages(system, QUESTION, quotes),
            prompts.analysis_schema(300, 120),
        ),
    ]


def complete(llm: Any, messages: list[Message], schema: dict[str, Any], tokens: int = 160) -> str:
    llm.reset()
    prompt = ChatRenderer(llm).prompt_tokens(messages)
    grammar = schema_grammar(schema)
    result = llm.create_completion(
        prompt, max_tokens=tokens, temperature=0.0, repeat_penalty=1.15, grammar=grammar
    )
    return str(result["choices"][0]["text"])


def test_the_same_replies_as_the_plain_grammar(models: tuple[Any, Any], corpus: Path) -> None:
    plain, service = models
    for messages, schema in step_calls(corpus):
        expected = complete(plain, messages, schema)
        assert complete(service, messages, schema) == expected
        found = service.grammar_sampler.counts
        # The point of it: most tokens are the model's best and are checked alone.
        assert found.first > found.candidates + found.vocabulary


def test_a_rejected_token_is_resampled_from_the_whole_vocabulary(
    models: tuple[Any, Any], corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one candidate, every rejection falls through to the whole vocabulary: still the
    plain grammar's reply."""
    plain, service = models
    monkeypatch.setattr(grammar_sampler, "CANDIDATES", 1)
    messages, schema = step_calls(corpus)[1]
    expected = complete(plain, messages, schema)
    assert complete(service, messages, schema) == expected
    assert service.grammar_sampler.counts.vocabulary > 0
    assert service.grammar_sampler.counts.candidates == 0


def test_a_model_asked_for_prose_still_writes_valid_json(models: tuple[Any, Any]) -> None:
    """The model's best first token is a word here, never `{`: every rejected token is
    replaced, and the reply parses and fits the schema (an enum too)."""
    _, service = models
    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green", "blue"]},
            "why": {"type": "string"},
        },
        "required": ["colour", "why"],
        "additionalProperties": False,
    }
    messages: list[Message] = [
        {"role": "user", "content": "Write a short poem about the sea, in plain prose, no JSON."}
    ]
    reply = complete(service, messages, schema, tokens=120)
    found = service.grammar_sampler.counts
    assert found.candidates + found.vocabulary > 0
    jsonschema.validate(json.loads(reply), schema)


def test_free_text_and_sampling_are_llama_cpps_own(models: tuple[Any, Any]) -> None:
    """Without a grammar (or with temperature) the sampler is llama-cpp-python's."""
    plain, service = models
    messages: list[Message] = [{"role": "user", "content": "Name a colour."}]
    prompt = ChatRenderer(service).prompt_tokens(messages)
    texts = []
    service.grammar_sampler = None
    for llm in (plain, service):
        llm.reset()
        result = llm.create_completion(prompt, max_tokens=12, temperature=0.0)
        texts.append(result["choices"][0]["text"])
    assert texts[0] == texts[1]
    assert service.grammar_sampler is None
