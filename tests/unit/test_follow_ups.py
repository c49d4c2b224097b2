"""Follow-up rewriting (generation/reasoning/follow_ups.py) with a scripted generator (a fake:
what the model replies is not the point here; tests/integration/test_default_model.py runs the
real model)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generation.llm.generator import Completion, GeneratorUnavailable, Message
from generation.reasoning.follow_ups import ANSWER_CHARS, rewrite_messages, standalone_question
from generation.reasoning.values import Turn


class Scripted:
    """Replies with the texts given, in turn; records what it was asked."""

    model = "scripted"

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.asked: list[list[Message]] = []

    async def generate(self, messages: list[Message], **_: Any) -> Completion:
        self.asked.append(messages)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Completion(reply, self.model, 10, 5, 0, 0.1, "stop")


HISTORY = (Turn("Where was the Kestrel engine built?", "In Halden [1]"),)


def rewrite(generator: Scripted, history: tuple[Turn, ...], question: str) -> str:
    # In a thread of its own: after a browser test, Playwright's event loop is set in the main
    # thread, where asyncio.run refuses to start.
    work = standalone_question(generator, history, question)  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def test_a_follow_up_is_rewritten_from_the_history() -> None:
    generator = Scripted(json.dumps({"question": "When was the Kestrel engine built?"}))
    assert rewrite(generator, HISTORY, "When was it built?") == "When was the Kestrel engine built?"
    prompt = generator.asked[0][-1]["content"]
    assert "Q: Where was the Kestrel engine built?\nA: In Halden [1]" in prompt
    assert "Follow-up question: When was it built?" in prompt


def test_without_history_nothing_is_generated() -> None:
    generator = Scripted()
    assert rewrite(generator, (), "When was it built?") == "When was it built?"
    assert generator.asked == []


def test_a_failed_or_empty_rewrite_searches_the_question_as_asked() -> None:
    question = "When was it built?"
    assert rewrite(Scripted(GeneratorUnavailable("down")), HISTORY, question) == question
    assert rewrite(Scripted('{"question": "  "}'), HISTORY, question) == question
    assert rewrite(Scripted("not json"), HISTORY, question) == question


def test_long_answers_and_old_turns_are_left_out_of_the_prompt() -> None:
    history = [Turn(f"question {i}?", "word " * 200) for i in range(10)]
    prompt = rewrite_messages(history, "And then?")[-1]["content"]
    assert "question 3?" not in prompt and "question 4?" in prompt
    answer = prompt.split("Q: question 9?\nA: ", 1)[1].split("\n", 1)[0]
    assert len(answer) == ANSWER_CHARS + 1  # clipped, with an ellipsis
