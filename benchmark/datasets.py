"""Public QA data as benchmark sets: documents to ingest and questions with gold labels.

Loaders for the formats in ../shared/datasets (SQuAD v1.1/2.0, HotpotQA distractor, SciFact)
and a plain folder with `questions.jsonl` (../shared/eval-dev). Sampling is seeded, so a run is
repeatable. Only `--split train` files may be used to tune anything; `benchmark` files are for
reporting.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Split = Literal["train", "benchmark"]
DATASETS = ("squad", "squad2", "hotpotqa", "scifact")
_SLUG = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class BenchQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    gold_docs: tuple[str, ...]  # filenames that hold the answer
    gold_sentences: tuple[str, ...] = ()  # supporting sentences, when the data has them
    # answerable; unanswerable (the data says so); left_out (its gold document was withheld)
    kind: Literal["answerable", "unanswerable", "left_out"] = "answerable"

    @property
    def answerable(self) -> bool:
        return self.kind == "answerable"


@dataclass
class BenchSet:
    name: str
    split: str
    documents: dict[str, str]  # filename -> text
    questions: list[BenchQuestion]
    notes: list[str] = field(default_factory=list)


def _slug(text: str, limit: int = 60) -> str:
    return _SLUG.sub("-", text).strip("-")[:limit] or "doc"


def load_benchmark(
    dataset: str,
    *,
    split: Split = "train",
    questions: int | None = None,
    seed: int = 13,
    data_dir: Path = Path("../shared/datasets"),
    holdout: float = 0.0,
    max_documents: int | None = None,
) -> BenchSet:
    """`dataset` is a name in DATASETS or a folder with `corpus/` and `questions.jsonl`.

    `questions` samples that many (seeded); `holdout` withholds the gold documents of that share
    of the sampled answerable questions, which then count as `left_out` (to be declined).
    `max_documents` caps the collection: the sampled questions' gold documents, then seeded
    distractors from the rest (ingesting a whole dataset takes long on a small machine).
    """
    rng = random.Random(seed)  # noqa: S311 - seeded sampling, not security
    folder = Path(dataset)
    if dataset not in DATASETS and folder.is_dir():
        bench = _folder(folder)
    elif dataset in ("squad", "squad2"):
        version = "v1.1" if dataset == "squad" else "v2.0"
        half = "train-half" if split == "train" else "benchmark-half"
        bench = _squad(data_dir / "squad" / f"{version}-{half}.json", dataset, split)
    elif dataset == "hotpotqa":
        part = "train-part" if split == "train" else "benchmark-part"
        path = data_dir / "hotpotqa" / f"dev-distractor-{part}.json"
        bench = _hotpotqa(path, split, questions, rng)
    elif dataset == "scifact":
        bench = _scifact(data_dir / "scifact", split, questions, rng)
    else:
        raise ValueError(
            f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)} or a folder with "
            "corpus/ and questions.jsonl"
        )
    if questions is not None and len(bench.questions) > questions:
        bench.questions = _sample(bench.questions, questions, rng)
    if max_documents is not None and len(bench.documents) > max_documents:
        _cap(bench, max_documents, rng)
    if holdout > 0:
        _withhold(bench, holdout, rng)
    return bench


def _cap(bench: BenchSet, limit: int, rng: random.Random) -> None:
    gold = list(dict.fromkeys(d for q in bench.questions for d in q.gold_docs))
    others = sorted(set(bench.documents) - set(gold))
    room = max(0, limit - len(gold))
    keep = set(gold) | set(rng.sample(others, min(room, len(others))))
    total = len(bench.documents)
    bench.documents = {k: v for k, v in bench.documents.items() if k in keep}
    bench.notes.append(
        f"{len(bench.documents)} of {total} documents ingested: every sampled question's gold "
        "documents plus seeded random distractors"
    )


def _sample(items: list[BenchQuestion], n: int, rng: random.Random) -> list[BenchQuestion]:
    """A seeded sample, stratified by kind so a small sample of SQuAD 2.0 still holds
    unanswerable questions in the data's proportion (at least one of each kind present)."""
    kinds: dict[str, list[int]] = {}
    for i, q in enumerate(items):
        kinds.setdefault(q.kind, []).append(i)
    quota = {k: max(1, round(n * len(v) / len(items))) for k, v in kinds.items()}
    while sum(quota.values()) > n:
        largest = max(quota, key=lambda k: quota[k])
        quota[largest] -= 1
    picked = sorted(i for k, v in kinds.items() for i in rng.sample(v, min(quota[k], len(v))))
    return [items[i] for i in picked]


def _withhold(bench: BenchSet, share: float, rng: random.Random) -> None:
    answerable = [q for q in bench.questions if q.answerable]
    chosen = rng.sample(answerable, round(share * len(answerable)))
    withheld = {doc for q in chosen for doc in q.gold_docs[:1]}
    for name in withheld:
        bench.documents.pop(name, None)
    bench.questions = [
        replace(q, kind="left_out") if q.answerable and withheld & set(q.gold_docs) else q
        for q in bench.questions
    ]
    bench.notes.append(f"gold documents of {len(chosen)} questions withheld ({share:.0%})")


def _folder(folder: Path) -> BenchSet:
    corpus = folder / "corpus" if (folder / "corpus").is_dir() else folder
    return load_folder(corpus, folder / "questions.jsonl", folder.name)


def load_folder(corpus: Path, questions_file: Path, name: str | None = None) -> BenchSet:
    """Documents from `corpus` (md, txt, html) and JSON-lines questions with `question`,
    `answers` (accepted strings) and `doc` (the file holding the answer)."""
    documents = {
        p.name: p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(corpus.iterdir())
        if p.is_file() and p.suffix.lower() in (".md", ".txt", ".html", ".htm")
    }
    questions = []
    for n, line in enumerate(questions_file.read_text().splitlines()):
        if line.strip():
            row = json.loads(line)
            questions.append(
                BenchQuestion(
                    str(row.get("id", n)),
                    row["question"],
                    tuple(row["answers"]),
                    (row["doc"],) if row.get("doc") else (),
                )
            )
    return BenchSet(name or corpus.name, "dev", documents, questions)


def _sentence_at(context: str, offset: int) -> str:
    """The sentence of `context` around `offset` (split on ., ! or ? followed by a space)."""
    start = max(context.rfind(". ", 0, offset), context.rfind("? ", 0, offset))
    start = 0 if start < 0 else start + 2
    ends = [i for i in (context.find(". ", offset), context.find("? ", offset)) if i >= 0]
    end = min(ends) + 1 if ends else len(context)
    return context[start:end].strip()


def _squad(path: Path, name: str, split: str) -> BenchSet:
    data = json.loads(path.read_text())["data"]
    documents: dict[str, str] = {}
    questions: list[BenchQuestion] = []
    for article in data:
        for number, paragraph in enumerate(article["paragraphs"]):
            filename = f"{_slug(article['title'])}-{number:03d}.txt"
            context = paragraph["context"]
            documents[filename] = context
            for qa in paragraph["qas"]:
                if qa.get("is_impossible"):
                    questions.append(
                        BenchQuestion(qa["id"], qa["question"], (), (), (), "unanswerable")
                    )
                    continue
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                sentences = tuple(
                    dict.fromkeys(_sentence_at(context, a["answer_start"]) for a in qa["answers"])
                )
                questions.append(
                    BenchQuestion(qa["id"], qa["question"], answers, (filename,), sentences)
                )
    return BenchSet(name, split, documents, questions)


def _hotpotqa(path: Path, split: str, n: int | None, rng: random.Random) -> BenchSet:
    """Each example's 10 paragraphs (2 gold, 8 distractors) become documents; only the sampled
    examples' paragraphs are ingested, so the distractors are the dataset's own."""
    examples: list[dict[str, Any]] = json.loads(path.read_text())
    if n is not None and len(examples) > n:
        examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), n))]
    documents: dict[str, str] = {}
    questions = []
    for ex in examples:
        paragraphs = dict(ex["context"])
        for title, sentences in ex["context"]:
            documents.setdefault(f"{_slug(title)}.txt", f"{title}\n\n" + "".join(sentences))
        gold_titles = list(dict.fromkeys(t for t, _ in ex["supporting_facts"]))
        gold_sentences = tuple(
            paragraphs[t][i].strip()
            for t, i in ex["supporting_facts"]
            if t in paragraphs and i < len(paragraphs[t])
        )
        questions.append(
            BenchQuestion(
                ex["_id"],
                ex["question"],
                (ex["answer"],),
                tuple(f"{_slug(t)}.txt" for t in gold_titles),
                gold_sentences,
            )
        )
    return BenchSet("hotpotqa", split, documents, questions)


SCIFACT_QUESTION = "Do the documents support or contradict this claim? Claim: {claim}"
_SCIFACT_ANSWERS = {
    "SUPPORT": ("supports", "supported", "support"),
    "CONTRADICT": ("contradicts", "contradicted", "contradict"),
}


def _scifact(folder: Path, split: str, n: int | None, rng: random.Random) -> BenchSet:
    """Claims as questions ("support or contradict?"); the cited abstracts plus as many random
    distractor abstracts are the documents; claims without evidence are unanswerable."""
    claims_file = "claims_train.jsonl" if split == "train" else "claims_dev.jsonl"
    claims = [json.loads(x) for x in (folder / claims_file).read_text().splitlines() if x.strip()]
    if n is not None and len(claims) > n:
        claims = [claims[i] for i in sorted(rng.sample(range(len(claims)), n))]
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            corpus[int(doc["doc_id"])] = doc
    wanted = {int(d) for c in claims for d in c.get("cited_doc_ids", [])}
    others = sorted(set(corpus) - wanted)
    wanted |= set(rng.sample(others, min(len(others), len(wanted))))

    def filename(doc_id: int) -> str:
        return f"scifact-{doc_id}.txt"

    documents = {
        filename(d): corpus[d]["title"] + "\n\n" + " ".join(corpus[d]["abstract"])
        for d in sorted(wanted)
        if d in corpus
    }
    questions = []
    for claim in claims:
        evidence = claim.get("evidence") or {}
        question = SCIFACT_QUESTION.format(claim=claim["claim"])
        if not evidence:
            questions.append(BenchQuestion(str(claim["id"]), question, (), (), (), "unanswerable"))
            continue
        labels = [e["label"] for sets in evidence.values() for e in sets]
        label = max(set(labels), key=labels.count)
        sentences = tuple(
            corpus[int(d)]["abstract"][i].strip()
            for d, sets in evidence.items()
            for e in sets
            for i in e["sentences"]
            if int(d) in corpus and i < len(corpus[int(d)]["abstract"])
        )
        questions.append(
            BenchQuestion(
                str(claim["id"]),
                question,
                _SCIFACT_ANSWERS[label],
                tuple(filename(int(d)) for d in evidence),
                sentences,
            )
        )
    return BenchSet("scifact", split, documents, questions)
