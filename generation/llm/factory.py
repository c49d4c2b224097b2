"""`make_generator`: the configured LLM backend, the heavy one imported only in its branch."""

from __future__ import annotations

from core.settings import GenerationSettings
from generation.llm.generator import Generator


def make_generator(settings: GenerationSettings) -> Generator:
    if settings.backend == "openai":
        from generation.llm.openai_compatible import OpenAIGenerator

        return OpenAIGenerator(settings.openai)
    from generation.llm.llamacpp import LlamaCppGenerator

    return LlamaCppGenerator(settings.llamacpp)
