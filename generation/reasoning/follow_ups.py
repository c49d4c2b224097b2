"""Follow-up questions: "When was it built?" after "Where was the Kestrel engine built?".

Retrieval searches for the words of the question, so a follow-up that leans on the conversation
("it", "there", "the second one") finds nothing useful. Before retrieval, one short generation
rewrites it into a question that stands alone, from the conversation so far; the reasoning
steps and the cache then work on that question, and the response shows it. A question asked
without history is not rewritten (no generation). When the generator fails or writes nothing
usable, the question is searched as asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from core.errors import RagError
from generation.llm.generator import Generator, Message
from generation.reasoning.values import Turn

log = logging.getLogger(__name__)

# The turns the rewrite reads (the latest ones), and how much of each answer.
HISTORY_TURNS = 6
ANSWER_CHARS = 300
QUESTION_CHARS = 300
MAX_TOKENS = 120


def rewrite_messages(history: Sequence[Turn], question: str) -> list[Message]:
    lines = []
    for turn in history[-HISTORY_TURNS:]:
        answer = " ".join(turn.answer.split())
        if len(answer) > ANSWER_CHARS:
            answer = answer[:ANSWER_CHARS] + "…"
        lines.append(f"Q: {' '.join(turn.question.split())}\nA: {answer}")
    conversation = "\n".join(lines)
    return [
        {
            "role": "system",
            "content": "You turn a follow-up question into a question that can be understood "
            "without the conversation before it.",
        },
        {
            "role": "user",
            "content": f"Conversation so far:\n{conversation}\n\nFollow-up question: {question}\n"
            "Rewrite the follow-up question so that it stands alone: replace words such as it, "
            "they, this, that, there and he or she with what they refer to in the conversation. "
            "Keep the question's language and meaning; do not answer it. If it already stands "
            'alone, repeat it unchanged. Reply with JSON only: {"question": "..."}',
        },
    ]


REWRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 1, "maxLength": QUESTION_CHARS}},
    "required": ["question"],
    "additionalProperties": False,
}


async def standalone_question(generator: Generator, history: Sequence[Turn], question: str) -> str:
    """The follow-up as a question that stands alone (the question itself without history,
    or when the rewrite fails)."""
    if not history:
        return question
    try:
        reply = await generator.generate(
            rewrite_messages(history, question), schema=REWRITE_SCHEMA, max_tokens=MAX_TOKENS
        )
        rewritten = json.loads(reply.text).get("question", "")
    except (RagError, ValueError, AttributeError) as exc:
        log.warning("follow-up not rewritten, searched as asked: %r", exc)
        return question
    rewritten = " ".join(str(rewritten).split())
    return rewritten or question
