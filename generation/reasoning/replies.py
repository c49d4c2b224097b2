"""The pure functions that parse, validate and repair each step's reply (a reply cut off
mid-JSON is salvaged): sentence ids must exist and come from chunks judged relevant, [n] markers
must point at selected evidence, fields are clipped to their bounds. No I/O: the pipeline
(generation/reasoning/pipeline.py) runs the steps, and training renders trajectories that these
functions must accept.
"""

from __future__ import annotations

import json
import re
from typing import Any

from generation.llm.generator import Completion
from generation.reasoning.grounding import SUPPORTED, support
from generation.reasoning.values import Citation, Evidence, Judgement, Passage, StepOutputError

_MARKER = re.compile(r"\[(\d+(?:\.\d+)?)\]")
# Bracketed evidence numbers or sentence ids in an answer: "[1]", "[1, 2]", "[2.3]".
_ANSWER_MARKER = re.compile(r"\[\s*\d+(?:\.\d+)?(?:\s*,\s*\d+(?:\.\d+)?)*\s*\]")


def salvage_json(text: str) -> Any:
    """Parse `text`, or — when it stops mid-way (the token limit cut it off) — parse it with its
    open string, arrays and objects closed. Raises ValueError if that does not parse either.

    Raw control characters (a newline typed inside a string) are accepted: llama.cpp's JSON
    grammar lets a small model emit them, and the meaning is unambiguous.
    """
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    closers: list[str] = []
    in_string = escaped = False
    string_start = 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            string_start = i
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
    if not closers:
        raise ValueError("not valid JSON")
    # A string cut off is dropped, not closed: a cut "1.12" must not become the id "1.1".
    tail = text[:string_start] if in_string else text
    tail = tail.rstrip().rstrip(",").rstrip()
    if tail.endswith(":"):
        tail += ' ""'
    return json.loads(tail + "".join(reversed(closers)), strict=False)


def reply_json(completion: Completion) -> Any:
    try:
        return salvage_json(completion.text)
    except ValueError as exc:
        truncated = " (the reply was cut off)" if completion.finish_reason == "length" else ""
        raise StepOutputError(f"not valid JSON{truncated}") from exc


def clip(text: str, limit: int) -> str:
    """Trim a field the model wrote past its length bound (at a word boundary if possible)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def parse_relevance(data: Any, passages: list[Passage], reason_chars: int) -> list[Judgement]:
    if not isinstance(data, dict):
        raise StepOutputError("relevance is not a JSON object")
    judged = []
    for p in passages:
        item = data.get(f"document_{p.number}")
        if not isinstance(item, dict) or not isinstance(item.get("relevant"), bool):
            raise StepOutputError(f"document_{p.number} has no relevant: true/false")
        reason = clip(str(item.get("reason") or ""), reason_chars)
        judged.append(Judgement(p.hit.chunk_id, p.hit.document_id, item["relevant"], reason))
    return judged


def parse_evidence(
    data: Any, relevant: list[Passage], max_items: int, reason_chars: int
) -> list[Evidence]:
    items = data.get("evidence") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise StepOutputError("evidence is not a list")
    reasons = {
        str(i.get("sentence")): clip(str(i.get("reason") or ""), reason_chars)
        for i in items
        if isinstance(i, dict)
    }
    ids = [str(i.get("sentence")) for i in items if isinstance(i, dict)]
    evidence = evidence_from_ids(ids, relevant, reasons, max_items)
    if not evidence:
        raise StepOutputError("no selected sentence id belongs to a relevant document")
    return evidence


def evidence_from_ids(
    ids: list[str], passages: list[Passage], reasons: dict[str, str], max_items: int
) -> list[Evidence]:
    """Evidence for the sentence ids that exist in `passages`; unknown ids and repeats dropped."""
    by_id = {p.sentence_id(i): (p, i) for p in passages for i in range(len(p.sentences))}
    evidence: list[Evidence] = []
    for sentence_id in dict.fromkeys(ids):
        if sentence_id not in by_id or len(evidence) >= max_items:
            continue
        p, i = by_id[sentence_id]
        s = p.sentences[i]
        evidence.append(
            Evidence(
                id=len(evidence) + 1,
                sentence=sentence_id,
                chunk_id=p.hit.chunk_id,
                document_id=p.hit.document_id,
                filename=p.hit.filename,
                quote=p.sentence_text(i),
                start=p.hit.start + s.start,
                end=p.hit.start + s.end,
                reason=reasons.get(sentence_id, ""),
            )
        )
    return evidence


def parse_analysis(data: Any, analysis_chars: int, answer_chars: int) -> tuple[str, str]:
    if not isinstance(data, dict):
        raise StepOutputError("the reply is not a JSON object")
    analysis, answer = data.get("analysis"), data.get("answer", "")
    if not isinstance(analysis, str) or not isinstance(answer, str):
        raise StepOutputError("analysis and answer must be strings")
    # Evidence markers are the analysis's business: an answer of only "[1, 2]" says nothing.
    answer = strip_answer_markers(answer)
    # An empty answer (say, cut off by the token limit) is replaced from the evidence later.
    return clip(analysis, analysis_chars), clip(answer, answer_chars)


def strip_answer_markers(answer: str) -> str:
    """The answer without bracketed evidence numbers or sentence ids ("[1]", "[1, 2]", "[2.3]";
    each becomes a space)."""
    return _ANSWER_MARKER.sub(" ", answer)


def parse_answer(data: Any, answer_chars: int) -> str:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("answer"), str)
        or not data["answer"].strip()
    ):
        raise StepOutputError("a non-empty answer is required")
    return clip(data["answer"], answer_chars)


def repair_markers(analysis: str, evidence: list[Evidence]) -> tuple[str, list[int]]:
    """Keep [n] markers that name selected evidence; map [d.s] sentence ids to their evidence
    number; drop the rest. Returns the repaired analysis and the evidence ids it cites."""
    by_sentence = {e.sentence: e.id for e in evidence}
    valid = {e.id for e in evidence}
    cited: list[int] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        number = by_sentence.get(token) if "." in token else int(token)
        if number not in valid:
            return ""
        if number not in cited:
            cited.append(number)
        return f"[{number}]"

    repaired = _MARKER.sub(replace, analysis)
    return re.sub(r"[ \t]{2,}", " ", repaired).strip(), cited


def sentence_rank(sentence_id: str) -> tuple[int, int]:
    document, _, sentence = sentence_id.partition(".")
    return int(document), int(sentence or 0)


def citation_of(e: Evidence) -> Citation:
    return Citation(e.id, e.document_id, e.filename, e.chunk_id, e.quote, e.start, e.end)


def answer_citations(
    answer: str, question: str, evidence: list[Evidence], cited: list[int]
) -> list[Evidence]:
    """What backs the answer: of the evidence the analysis cites (all of it when it cites
    none), the sentences that hold the answer on their own, keeping those that hold the most
    of it; when none does (an answer drawn from several sentences together), every one."""
    backing = [e for e in evidence if e.id in cited] or evidence
    shares = {e.id: support(answer, question, [e.quote]) for e in backing}
    best = max(shares.values(), default=0.0)
    # Of the sentences holding the answer, those holding the most of it: a sentence with one
    # word of a three-word name does not back it beside the sentence stating the name.
    holding = [e for e in backing if shares[e.id] >= SUPPORTED and shares[e.id] == best]
    return holding or backing
