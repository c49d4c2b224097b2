"""Self-reasoning trajectories from public QA data: what the pipeline would send for each step
and what it should have received (gold labels), for training a LoRA adapter.

Each example is retrieved with the service's own retrieval (a fresh collection of the dataset's
passages, the same chunking, top-k and mode as serving), so the distractors are the ones a
served model sees. Messages and schemas come from the pipeline's prompt builders
(generation/reasoning/prompts.py), and every target is checked with the pipeline's own parsers
(generation/reasoning/replies.py) before it is written: a trajectory is exactly what serving
sends and parses.

Gold labels give the choices: a passage is relevant when it comes from a gold document and holds
a gold answer or supporting sentence; the evidence is the sentences holding the answer or the
supporting facts; the answer is the gold short answer. An unanswerable question (or one whose
gold passage was not retrieved) gives a "nothing relevant" trajectory: only the relevance step.
Reasons and analyses come from a teacher model when one is given and its choices agree with gold
(the paper's quality filter), else from templates.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.datasets import BenchQuestion, BenchSet, _cap, load_benchmark
from benchmark.scoring import contains_gold, normalize_answer
from core.settings import PipelineSettings
from generation.llm.generator import Generator, Message
from generation.reasoning import prompts
from generation.reasoning.evidence_ranking import ranked_sentence_ids
from generation.reasoning.replies import parse_analysis, parse_evidence, parse_relevance, reply_json
from generation.reasoning.values import Passage, StepOutputError
from retrieval.search import Hit
from training.dev_samples import dev_exclusions

FORMAT = "rag-trajectories/1"
STEPS = ("relevance", "evidence", "analysis")
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Step:
    step: str
    messages: list[Message]
    schema: dict[str, Any]
    target: str
    max_tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "messages": self.messages,
            "schema": self.schema,
            "target": self.target,
        }


@dataclass
class Trajectory:
    id: str
    question: str
    answers: list[str]
    answerable: bool
    source: str  # "teacher" or "template"
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": self.answers,
            "answerable": self.answerable,
            "source": self.source,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True)
class Gold:
    """What the pipeline should choose for one question over its retrieved passages."""

    relevant: list[bool]
    evidence: list[str]  # sentence ids, best first
    answer: str


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _overlaps(sentence: str, gold: str) -> bool:
    """A passage sentence and a gold sentence are the same fact (chunking and sentence splits
    differ between the dataset and the service, so compare normalised containment)."""
    a, b = normalize_answer(sentence), normalize_answer(gold)
    return bool(a) and bool(b) and (a in b or b in a)


def _holds_answer(text: str, q: BenchQuestion) -> bool:
    return contains_gold(text, q.answers)


def gold_choices(q: BenchQuestion, passages: list[Passage], max_evidence: int) -> Gold:
    """The gold relevance verdicts, evidence sentence ids and answer for these passages."""
    relevant = []
    for p in passages:
        if not q.answerable or p.hit.filename not in q.gold_docs:
            relevant.append(False)
            continue
        sentences = [p.sentence_text(i) for i in range(len(p.sentences))]
        supports = any(_overlaps(s, g) for s in sentences for g in q.gold_sentences)
        relevant.append(_holds_answer(p.hit.text, q) or supports)
    ranked: list[tuple[int, str]] = []
    for p, is_relevant in zip(passages, relevant, strict=True):
        if not is_relevant:
            continue
        for i in range(len(p.sentences)):
            text = p.sentence_text(i)
            holds = _holds_answer(text, q)
            support = any(_overlaps(text, g) for g in q.gold_sentences)
            if holds or support:
                # The sentence that states the answer and is a gold sentence first.
                ranked.append((0 if holds and support else 1 if holds else 2, p.sentence_id(i)))
    ranked.sort(key=lambda r: r[0])  # stable: document order within a rank
    evidence = [sentence_id for _, sentence_id in ranked][:max_evidence]
    return Gold(relevant, evidence, min(q.answers, key=len) if q.answers else "")


# Templates ---------------------------------------------------------------------------------


def _words(text: str, n: int) -> str:
    return " ".join(_WORDS.findall(text)[:n])


def _topic(p: Passage) -> str:
    title = p.hit.filename.rsplit(".", 1)[0].replace("-", " ").replace("_", " ")
    title = re.sub(r"\s\d{3}$", "", title)  # SQuAD paragraph numbers
    return _words(title, 6) or _words(p.hit.text, 6)


def _relevance_reason(p: Passage, q: BenchQuestion, relevant: bool, limit: int) -> str:
    if not relevant:
        return f"It is about {_topic(p)}; it does not answer the question."[:limit]
    for i in range(len(p.sentences)):
        if _holds_answer(p.sentence_text(i), q):
            answer = min((a for a in q.answers if contains_gold(p.sentence_text(i), [a])), key=len)
            return f"It states {_words(answer, 8)}, which answers the question."[:limit]
    return f"It gives a fact the question needs about {_topic(p)}."[:limit]


def _evidence_reason(text: str, q: BenchQuestion, limit: int) -> str:
    held = [a for a in q.answers if contains_gold(text, [a])]
    if held:
        return f"It states {_words(min(held, key=len), 8)}."[:limit]
    return f"It states {_words(text, 10)}."[:limit]


def _template_analysis(quotes: list[str], limit: int) -> str:
    """One or two sentences made of the evidence itself, each with its marker: nothing the
    evidence does not say (the grounding check drops sentences that add content words)."""
    parts: list[str] = []
    for number, quote in enumerate(quotes[:2], 1):
        text = " ".join(quote.split()).rstrip(".;:, ")
        part = f"{text} [{number}]."
        if len(" ".join([*parts, part])) > limit:
            break
        parts.append(part)
    return " ".join(parts)


# Building ----------------------------------------------------------------------------------


def _step(request: prompts.StepRequest, target: dict[str, Any]) -> Step:
    # In the schema's key order: the grammar makes the model write them in that order.
    in_order = {k: target[k] for k in request.schema.get("properties", {}) if k in target}
    target = {**in_order, **target}  # keys the schema does not name (none today) stay, last
    return Step(
        request.step, request.messages, request.schema, _compact(target), request.max_tokens
    )


Teacher = Callable[[prompts.StepRequest], Any]  # a request -> the teacher's parsed JSON reply


def build_trajectory(
    q: BenchQuestion,
    passages: list[Passage],
    settings: PipelineSettings,
    teacher: Teacher | None = None,
) -> Trajectory:
    """The trajectory for one question over its retrieved passages (see the module doc)."""
    s = settings
    gold = gold_choices(q, passages, s.max_evidence)
    system = prompts.system_message(q.question, passages)
    if not gold.evidence:  # nothing retrieved answers it: the model should say so
        gold = Gold([False] * len(passages), [], "")
    answerable = bool(gold.evidence)
    if teacher is not None:
        taught = _from_teacher(q, passages, gold, system, s, teacher)
        if taught is not None:
            return Trajectory(q.id, q.question, list(q.answers), answerable, "teacher", taught)
    steps = [
        _step(
            prompts.relevance_request(system, q.question, passages, s),
            {
                f"document_{p.number}": {
                    "reason": _relevance_reason(p, q, r, s.reason_max_chars),
                    "relevant": r,
                }
                for p, r in zip(passages, gold.relevant, strict=True)
            },
        )
    ]
    if answerable:
        relevant = [p for p, r in zip(passages, gold.relevant, strict=True) if r]
        by_id = {
            p.sentence_id(i): p.sentence_text(i) for p in relevant for i in range(len(p.sentences))
        }
        request = prompts.evidence_request(
            system, q.question, relevant, s, ranked_sentence_ids(q.question, relevant)
        )
        # With evidence candidates on, the target names only sentences the step offers (the
        # schema's enum), unless it offers none of the gold ones.
        offered = set(
            request.schema["properties"]["evidence"]["items"]["properties"]["sentence"]["enum"]
        )
        chosen = [sid for sid in gold.evidence if sid in offered] or gold.evidence
        steps.append(
            _step(
                request,
                {
                    "evidence": [
                        {
                            "sentence": sid,
                            "reason": _evidence_reason(by_id[sid], q, s.reason_max_chars),
                        }
                        for sid in chosen
                    ]
                },
            )
        )
        quotes = [by_id[sid] for sid in chosen]
        steps.append(
            _step(
                prompts.analysis_request(system, q.question, quotes, s),
                {
                    "analysis": _template_analysis(quotes, s.analysis_max_chars),
                    "answer": gold.answer,
                },
            )
        )
    trajectory = Trajectory(q.id, q.question, list(q.answers), answerable, "template", steps)
    check_trajectory(trajectory, passages, s)
    return trajectory


def _from_teacher(
    q: BenchQuestion,
    passages: list[Passage],
    gold: Gold,
    system: Message,
    s: PipelineSettings,
    teacher: Teacher,
) -> list[Step] | None:
    """The teacher's steps when every choice agrees with gold, else None (then: templates)."""
    try:
        request = prompts.relevance_request(system, q.question, passages, s)
        data = teacher(request)
        judged = parse_relevance(data, passages, s.reason_max_chars)
        if [j.relevant for j in judged] != gold.relevant:
            return None
        steps = [
            _step(
                request,
                {
                    f"document_{p.number}": {"reason": j.reason, "relevant": j.relevant}
                    for p, j in zip(passages, judged, strict=True)
                },
            )
        ]
        if not gold.evidence:
            return steps
        relevant = [p for p, r in zip(passages, gold.relevant, strict=True) if r]
        request = prompts.evidence_request(
            system, q.question, relevant, s, ranked_sentence_ids(q.question, relevant)
        )
        evidence = parse_evidence(teacher(request), relevant, s.max_evidence, s.reason_max_chars)
        if not {e.sentence for e in evidence} & set(gold.evidence):
            return None
        steps.append(
            _step(
                request,
                {"evidence": [{"sentence": e.sentence, "reason": e.reason} for e in evidence]},
            )
        )
        request = prompts.analysis_request(system, q.question, [e.quote for e in evidence], s)
        analysis, answer = parse_analysis(
            teacher(request), s.analysis_max_chars, s.answer_max_chars
        )
        if not contains_gold(answer, q.answers) or not re.search(r"\[\d+\]", analysis):
            return None
        steps.append(_step(request, {"analysis": analysis, "answer": answer}))
    except StepOutputError:
        return None
    return steps


def check_trajectory(t: Trajectory, passages: list[Passage], s: PipelineSettings) -> None:
    """Every target parses with the pipeline's parsers; evidence quotes are verbatim passage
    sentences and analysis markers point at evidence. Raises ValueError otherwise."""
    by_name = {step.step: step for step in t.steps}
    judged = parse_relevance(json.loads(by_name["relevance"].target), passages, s.reason_max_chars)
    relevant = [p for p, j in zip(passages, judged, strict=True) if j.relevant]
    if "evidence" not in by_name:
        if relevant:
            raise ValueError(f"{t.id}: relevant passages but no evidence step")
        return
    evidence = parse_evidence(
        json.loads(by_name["evidence"].target), relevant, s.max_evidence, s.reason_max_chars
    )
    texts = {p.hit.chunk_id: p.hit.text for p in passages}
    for e in evidence:
        if e.quote not in texts[e.chunk_id]:
            raise ValueError(f"{t.id}: evidence {e.sentence} is not verbatim")
    analysis, answer = parse_analysis(
        json.loads(by_name["analysis"].target), s.analysis_max_chars, s.answer_max_chars
    )
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", analysis)}
    if not markers or not markers <= set(range(1, len(evidence) + 1)):
        raise ValueError(f"{t.id}: analysis markers {sorted(markers)} do not match the evidence")
    if not answer:
        raise ValueError(f"{t.id}: empty answer")


# The command -------------------------------------------------------------------------------


def training_set(
    dataset: str, data_dir: Path, limit: int, seed: int, max_documents: int
) -> tuple[BenchSet, int]:
    """A train-split sample of `limit` questions that avoids the dev samples; the number of
    questions excluded for that reason."""
    excluded_ids, excluded_docs = dev_exclusions(dataset, data_dir)
    # Sample generously, then drop dev questions (and questions on dev documents).
    bench = load_benchmark(
        dataset, split="train", questions=limit * 2, seed=seed, data_dir=data_dir
    )
    kept = [
        q
        for q in bench.questions
        if q.id not in excluded_ids and not set(q.gold_docs) & excluded_docs
    ]
    dropped = len(bench.questions) - len(kept)
    bench.questions = kept[:limit]
    bench.documents = {d: t for d, t in bench.documents.items() if d not in excluded_docs}
    if len(bench.documents) > max_documents:
        _cap(bench, max_documents, random.Random(seed))  # noqa: S311 - seeded sampling
    return bench, dropped


def hits_from_json(items: Iterable[dict[str, Any]]) -> list[Hit]:
    return [
        Hit(
            chunk_id=int(h["chunk_id"]),
            document_id=str(h["document_id"]),
            filename=str(h["filename"]),
            text=str(h["text"]),
            score=float(h["score"]),
            start=int(h["start"]),
            end=int(h["end"]),
        )
        for h in items
    ]


def generator_teacher(generator: Generator, run: Callable[[Any], Any]) -> Teacher:
    """A teacher that runs `generator` on each request (`run` drives the coroutine)."""

    def ask(request: prompts.StepRequest) -> Any:
        completion = run(
            generator.generate(
                request.messages, schema=request.schema, max_tokens=request.max_tokens
            )
        )
        return reply_json(completion)

    return ask


def write(
    out: Path,
    trajectories: Sequence[Trajectory],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Write DIR/trajectories.jsonl and DIR/manifest.json (counts filled in here)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "trajectories.jsonl").open("w") as file:
        for t in trajectories:
            file.write(_compact(t.to_json()) + "\n")
    steps = {name: sum(s.step == name for t in trajectories for s in t.steps) for name in STEPS}
    teacher_n = sum(t.source == "teacher" for t in trajectories)
    manifest = {
        "format": FORMAT,
        **manifest,
        "counts": {
            "examples": len(trajectories),
            "answerable": sum(t.answerable for t in trajectories),
            "unanswerable": sum(not t.answerable for t in trajectories),
            "steps": steps,
            "source": {"teacher": teacher_n, "template": len(trajectories) - teacher_n},
        },
        "teacher_keep_rate": (
            round(teacher_n / len(trajectories), 3)
            if manifest.get("teacher") and trajectories
            else None
        ),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and trajectories of a folder written by `write`."""
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a {FORMAT} folder")
    with (folder / "trajectories.jsonl").open() as file:
        return manifest, [json.loads(line) for line in file if line.strip()]
