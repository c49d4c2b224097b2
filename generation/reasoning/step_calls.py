"""One reasoning step as a generator call: generate, parse, validate, one repair attempt; and
what a query's calls add up to (tokens, generator seconds, each step's milliseconds).

A reply that breaks the step's schema or rules gets one repair attempt (the model is told what
was wrong), then the query fails with `generator_invalid_output`. A step that writes the answer
is given an AnswerStream (answer_stream.py): each of its generations streams, and a discarded
one is announced before the next.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import RagError
from core.settings import PipelineSettings
from generation.llm.generator import Completion, Generator, GeneratorUnavailable, Message
from generation.reasoning import prompts
from generation.reasoning.answer_stream import AnswerStream
from generation.reasoning.replies import parse_analysis, reply_json
from generation.reasoning.results import Usage
from generation.reasoning.values import StepOutputError

T = TypeVar("T")


@dataclass
class QueryRun:
    """What one query accumulates: usage and timings across steps."""

    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    generator_s: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)

    def add(self, completion: Completion) -> None:
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cached_tokens += completion.cached_tokens
        self.generator_s += completion.seconds

    def mark(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings_ms[step] = round((now - since) * 1000, 2)
        return now

    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    def finish(self) -> dict[str, float]:
        """The timings with the query's total and its generator time added."""
        self.timings_ms["total"] = round((time.perf_counter() - self.started) * 1000, 2)
        self.timings_ms["generator"] = round(self.generator_s * 1000, 2)
        return self.timings_ms


class StepCaller:
    def __init__(self, generator: Generator, settings: PipelineSettings) -> None:
        self._generator = generator
        self._settings = settings

    async def structured(
        self,
        request: prompts.StepRequest,
        adapter: str | None,
        run: QueryRun,
        parse: Callable[[Any], T],
        stream: AnswerStream | None = None,
    ) -> T:
        """Generate, parse and validate one step; one repair attempt when the reply is bad.
        With `stream`, each generation streams the reply's answer to it."""
        step, messages, schema, max_tokens = (
            request.step,
            request.messages,
            request.schema,
            request.max_tokens,
        )
        completion = await self._generate(messages, schema, max_tokens, adapter, stream)
        run.add(completion)
        try:
            return parse(reply_json(completion))
        except (ValueError, StepOutputError) as first:
            problem = str(first)
        repair = [
            *messages,
            {"role": "assistant", "content": completion.text},
            {
                "role": "user",
                "content": f"That reply was not valid ({problem}). Reply again with only a "
                "complete JSON object in the required format.",
            },
        ]
        if stream is not None:
            stream.discard("repair")
        completion = await self._generate(repair, schema, max_tokens * 2, adapter, stream)
        run.add(completion)
        try:
            return parse(reply_json(completion))
        except (ValueError, StepOutputError) as second:
            raise RagError(
                "generator_invalid_output",
                f"the model's {step} reply did not match the required format after one repair "
                f"attempt: {second}",
            ) from second

    async def _generate(
        self,
        messages: list[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None,
        stream: AnswerStream | None,
    ) -> Completion:
        if stream is None:  # no callback: the backend generates as it always did
            return await self._generator.generate(
                messages, schema=schema, max_tokens=max_tokens, adapter=adapter
            )
        return await self._generator.generate(
            messages, schema=schema, max_tokens=max_tokens, adapter=adapter, on_text=stream.sink()
        )

    async def analysis(
        self,
        request: prompts.StepRequest,
        adapter: str | None,
        run: QueryRun,
        stream: AnswerStream | None = None,
    ) -> tuple[str, str]:
        """The last step of steps mode: the analysis and the answer, asked once more when the
        answer says nothing. With `stream`, the answer streams as it is written."""
        s = self._settings
        analysis, answer = await self.structured(
            request,
            adapter,
            run,
            lambda data: parse_analysis(data, s.analysis_max_chars, s.answer_max_chars),
            stream,
        )
        if not says_something(answer):
            analysis, answer = await self.answer_again(
                request, adapter, run, analysis, answer, stream
            )
        return analysis, answer

    async def answer_again(
        self,
        request: prompts.StepRequest,
        adapter: str | None,
        run: QueryRun,
        analysis: str,
        answer: str,
        stream: AnswerStream | None = None,
    ) -> tuple[str, str]:
        """The last step once more when its answer was only evidence numbers or punctuation
        (a small model's "[1], [2]"): told so, the model usually answers in words. When it does
        not, the first reply stands and grounding answers from the evidence."""
        s = self._settings
        retry = prompts.StepRequest(
            request.step,
            [
                *request.messages,
                {
                    "role": "assistant",
                    "content": json.dumps({"answer": answer.strip(), "analysis": analysis}),
                },
                {"role": "user", "content": prompts.ANSWER_AGAIN},
            ],
            request.schema,
            request.max_tokens,
        )
        if stream is not None:
            stream.discard("answer_again")
        try:
            again = await self.structured(
                retry,
                adapter,
                run,
                lambda data: parse_analysis(data, s.analysis_max_chars, s.answer_max_chars),
                stream,
            )
        except GeneratorUnavailable:
            raise
        except RagError:  # no valid reply the second time either
            return analysis, answer
        return again if says_something(again[1]) else (analysis, answer)


def says_something(answer: str) -> bool:
    """The answer has a letter or digit (not only markers, already removed, and commas)."""
    return any(ch.isalnum() for ch in answer)
