"""Labelled (question, sentence) pairs for the answer critic (generation/critic.py), from the
public train splits only: "does this sentence state the answer to this question, or the
evidence for it?".

- SQuAD 1.1 (train half): the sentence holding the answer's start is positive; the other
  sentences of its paragraph that share the most words with the question are negatives, and
  one sentence of another paragraph of the same article (same topic, no answer).
- SQuAD 2.0 (train half), unanswerable questions only (its answerable ones repeat 1.1's
  paragraphs): the sentence holding the plausible-but-wrong answer and the question's closest
  other sentences, all negatives. These teach the critic what a near miss looks like.
- HotpotQA (train part): the supporting facts are positives; the closest other sentences of
  the gold paragraphs and of the distractor paragraphs are negatives.
- SciFact (claims_train): rationale sentences are positives for the claim (asked as the
  service asks it); the closest other sentences of the cited abstracts are negatives, and
  every cited abstract's closest sentences for a claim without evidence.

Questions `rag bench --split train` samples (training/dev_samples.py: the small dev samples
and the larger decision samples) are left out, with the documents of the small ones: those
questions choose the critic's threshold and measure it.
Sentences are split as the pipeline splits passages, so they look as they will at run time.
Pure but for reading the files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.datasets import SCIFACT_QUESTION, _slug
from generation.reasoning.evidence_ranking import bm25, tokenize
from generation.reasoning.prompts import join_short
from retrieval.chunker import Sentence, split_sentences
from training.dev_samples import decision_exclusions

# Negatives per question: the closest other sentences of the gold paragraph(s).
HARD_NEGATIVES = 3


@dataclass(frozen=True)
class Pair:
    question: str
    sentence: str
    label: int  # 1: states the answer (or evidence for it), 0: does not
    source: str  # squad, squad2, hotpotqa, scifact


def _spans(text: str) -> list[Sentence]:
    """The sentences the pipeline shows the model (short ones joined to the next)."""
    return join_short(split_sentences(text))


def sentences_of(text: str) -> list[str]:
    return [text[s.start : s.end] for s in _spans(text)]


def closest(question: str, candidates: list[str], n: int) -> list[str]:
    """The `n` candidates with the highest BM25 against the question (the hardest negatives
    a lexical ranker offers)."""
    if not candidates or n <= 0:
        return []
    tokens = tokenize([question, *candidates])
    scores = bm25(tokens[0], tokens[1:])
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    return [candidates[i] for i in order[:n]]


def _index_at(text: str, offset: int) -> int | None:
    for i, s in enumerate(_spans(text)):
        if s.start <= offset < s.end:
            return i
    return None


def squad_pairs(data_dir: Path, rng: random.Random) -> list[Pair]:
    pairs: list[Pair] = []
    for version, name in (("v1.1", "squad"), ("v2.0", "squad2")):
        ids, docs = decision_exclusions(name, data_dir)
        data = json.loads((data_dir / "squad" / f"{version}-train-half.json").read_text())["data"]
        for article in data:
            paragraphs = [p["context"] for p in article["paragraphs"]]
            for number, paragraph in enumerate(article["paragraphs"]):
                if f"{_slug(article['title'])}-{number:03d}.txt" in docs:
                    continue
                context = paragraph["context"]
                sentences = sentences_of(context)
                others = [c for i, c in enumerate(paragraphs) if i != number]
                for qa in paragraph["qas"]:
                    if qa["id"] in ids:
                        continue
                    pairs.extend(_squad_question(qa, context, sentences, others, name, rng))
    return pairs


def _squad_question(
    qa: dict[str, Any],
    context: str,
    sentences: list[str],
    others: list[str],
    name: str,
    rng: random.Random,
) -> list[Pair]:
    question = qa["question"]
    if qa.get("is_impossible"):
        if name != "squad2":
            return []
        near = {
            i
            for a in qa.get("plausible_answers") or []
            if (i := _index_at(context, a["answer_start"])) is not None
        }
        rest = [s for i, s in enumerate(sentences) if i not in near]
        negatives = [sentences[i] for i in sorted(near)] + closest(question, rest, HARD_NEGATIVES)
        return [Pair(question, s, 0, name) for s in dict.fromkeys(negatives)]
    if name != "squad":
        return []
    gold = {i for a in qa["answers"] if (i := _index_at(context, a["answer_start"])) is not None}
    if not gold:
        return []
    positives = [sentences[i] for i in sorted(gold)]
    rest = [s for i, s in enumerate(sentences) if i not in gold]
    negatives = closest(question, rest, HARD_NEGATIVES)
    if others:
        negatives += closest(question, sentences_of(rng.choice(others)), 1)
    return [Pair(question, s, 1, name) for s in positives] + [
        Pair(question, s, 0, name) for s in negatives
    ]


def hotpotqa_pairs(data_dir: Path) -> list[Pair]:
    ids, _docs = decision_exclusions("hotpotqa", data_dir)
    path = data_dir / "hotpotqa" / "dev-distractor-train-part.json"
    pairs: list[Pair] = []
    for ex in json.loads(path.read_text()):
        if ex["_id"] in ids:
            continue
        question = ex["question"]
        facts = {(t, i) for t, i in ex["supporting_facts"]}
        gold_titles = {t for t, _ in facts}
        positives, near, far = [], [], []
        for title, sentences in ex["context"]:
            for i, sentence in enumerate(sentences):
                text = sentence.strip()
                if not text:
                    continue
                if (title, i) in facts:
                    positives.append(text)
                elif title in gold_titles:
                    near.append(text)
                else:
                    far.append(text)
        negatives = closest(question, near, 2) + closest(question, far, 2)
        pairs += [Pair(question, s, 1, "hotpotqa") for s in positives]
        pairs += [Pair(question, s, 0, "hotpotqa") for s in negatives]
    return pairs


def scifact_pairs(data_dir: Path) -> list[Pair]:
    ids, _docs = decision_exclusions("scifact", data_dir)
    folder = data_dir / "scifact"
    corpus = {int(d["doc_id"]): d for d in _jsonl(folder / "corpus.jsonl")}
    pairs: list[Pair] = []
    for claim in _jsonl(folder / "claims_train.jsonl"):
        if str(claim["id"]) in ids:
            continue
        question = SCIFACT_QUESTION.format(claim=claim["claim"])
        evidence = claim.get("evidence") or {}
        cited = [int(d) for d in claim.get("cited_doc_ids") or [] if int(d) in corpus]
        rationale = {
            (int(d), i) for d, sets in evidence.items() for e in sets for i in e["sentences"]
        }
        for doc_id in cited:
            abstract = [s.strip() for s in corpus[doc_id]["abstract"]]
            positives = [s for i, s in enumerate(abstract) if (doc_id, i) in rationale]
            rest = [s for i, s in enumerate(abstract) if (doc_id, i) not in rationale and s]
            pairs += [Pair(question, s, 1, "scifact") for s in positives]
            pairs += [Pair(question, s, 0, "scifact") for s in closest(question, rest, 2)]
    return pairs


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    return (json.loads(line) for line in path.read_text().splitlines() if line.strip())


def critic_pairs(data_dir: Path, seed: int = 7) -> list[Pair]:
    """Every pair of the four train sets, shuffled (seeded)."""
    rng = random.Random(seed)  # noqa: S311 - seeded sampling, not security
    pairs = squad_pairs(data_dir, rng) + hotpotqa_pairs(data_dir) + scifact_pairs(data_dir)
    rng.shuffle(pairs)
    return pairs
