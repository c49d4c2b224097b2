"""Retrieval recall@k: dense vs lexical (BM25) vs hybrid (RRF), on train-split samples.

    .venv/bin/python scripts/bench_retrieval.py [--questions 300] [--k 5] [--seed 0]
        [--datasets squad,hotpotqa,eval-dev] [--embedders ID,ID] [--no-write]

Runs the embedded service in process (SQLite, the default embedder; no LLM). Each dataset's
passages become the documents of a fresh collection: recorded as an upload, then parsed,
chunked, embedded and stored with the ingestion worker's own functions (embedding batched
across documents); then every question is searched in every variant through the service's own
Searcher (FAISS and BM25 kept in step with the database as in the API), and a hit counts when
a top-k chunk comes from a gold document.

Dense and hybrid run twice: questions encoded by the int8 twin (the default on CPU) and by the
torch model the documents were embedded with (`RAG_EMBEDDER__QUERY_ENCODER=same`).
`--embedders` embeds each dataset once per document embedder (one collection each), e.g.
`all-MiniLM-L6-v2,all-MiniLM-L6-v2-onnx-int8` to weigh int8 document vectors against torch's;
the torch-query variants run only where the embedder has a query twin.

- SQuAD v1.1 train half: every paragraph of the 24 articles is a document; a sample of
  questions, gold = the question's paragraph.
- HotpotQA train part (distractor): a sample of examples, their 10 paragraphs each (title line
  and sentences) are the documents; gold = the two supporting-fact paragraphs, counted as a hit
  when either is retrieved ("any") and when both are ("both").
- ../shared/eval-dev: the 800 FOLDOC documents, all questions, gold = `doc`.

Only `*-train-*` files and eval-dev are read: benchmark splits stay unseen. Writes the table
into docs/retrieval.md (between the bench_retrieval markers) and the figures to bench-results/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, latency_summary, log, machine_info, markdown_table
from bench_common import write_results as write_json

sys.path.insert(0, str(REPO_ROOT))

from app.services import Services  # noqa: E402
from core import repository  # noqa: E402
from core.settings import RetrievalSettings, Settings  # noqa: E402
from generation.llm.generator import UnavailableGenerator  # noqa: E402
from retrieval.chunker import chunk_text  # noqa: E402
from retrieval.embedders import QUERY_TWINS, EmbedderPool  # noqa: E402
from retrieval.parsing import detect_media_type, extract_text  # noqa: E402
from retrieval.search import Searcher  # noqa: E402

DATASETS = REPO_ROOT.parent / "shared" / "datasets"
SQUAD = DATASETS / "squad" / "v1.1-train-half.json"
HOTPOT = DATASETS / "hotpotqa" / "dev-distractor-train-part.json"
EVAL_DEV = REPO_ROOT.parent / "shared" / "eval-dev"
DOC = REPO_ROOT / "docs" / "retrieval.md"
BEGIN, END = "<!-- bench_retrieval:begin -->", "<!-- bench_retrieval:end -->"
STORE_BATCH = 256


@dataclass(frozen=True)
class Question:
    text: str
    gold: frozenset[str]  # filenames of the gold documents


@dataclass(frozen=True)
class Dataset:
    name: str
    documents: dict[str, str]  # filename -> text
    questions: list[Question]
    # True when a question has several gold documents: report "any" and "all" hits.
    multi_gold: bool = False


@dataclass(frozen=True)
class Variant:
    """A retrieval mode with its fusion settings."""

    label: str
    mode: str
    rrf_k: int = 60
    candidates: int = 20
    # Questions encoded by the int8 twin (auto, the default) or the collection's torch embedder.
    query_encoder: str = "auto"


VARIANTS = [
    Variant("dense", "dense"),
    Variant("dense, torch query encoder", "dense", query_encoder="same"),
    Variant("lexical (BM25)", "lexical"),
    Variant("hybrid (RRF k=60, 20 candidates)", "hybrid"),
    Variant("hybrid, torch query encoder", "hybrid", query_encoder="same"),
    Variant("hybrid (RRF k=60, 50 candidates)", "hybrid", 60, 50),
    Variant("hybrid (RRF k=20, 20 candidates)", "hybrid", 20, 20),
]


# Data -----------------------------------------------------------------------------------------


def squad(questions: int, rng: random.Random) -> Dataset:
    data = json.loads(SQUAD.read_text())["data"]
    documents: dict[str, str] = {}
    pool: list[Question] = []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article["paragraphs"]):
            name = f"squad-{a:02d}-{p:03d}.txt"
            documents[name] = paragraph["context"]
            pool.extend(Question(qa["question"], frozenset({name})) for qa in paragraph["qas"])
    return Dataset("SQuAD v1.1 train half", documents, rng.sample(pool, min(questions, len(pool))))


def hotpotqa(questions: int, rng: random.Random) -> Dataset:
    examples = json.loads(HOTPOT.read_text())
    sample = rng.sample(examples, min(questions, len(examples)))
    documents: dict[str, str] = {}
    names: dict[str, str] = {}
    out: list[Question] = []
    for example in sample:
        for title, sentences in example["context"]:
            if title not in names:
                names[title] = f"hotpot-{len(names):05d}.txt"
                documents[names[title]] = f"{title}\n{''.join(sentences).strip()}"
        gold = frozenset(names[title] for title, _ in example["supporting_facts"])
        out.append(Question(example["question"], gold))
    return Dataset("HotpotQA train part", documents, out, multi_gold=True)


def eval_dev(questions: int, rng: random.Random) -> Dataset:
    documents = {p.name: p.read_text() for p in sorted((EVAL_DEV / "corpus").iterdir())}
    lines = (EVAL_DEV / "questions.jsonl").read_text().splitlines()
    pool = [Question(q["question"], frozenset({q["doc"]})) for q in map(json.loads, lines)]
    return Dataset("eval-dev", documents, rng.sample(pool, min(questions, len(pool))))


LOADERS = {"squad": squad, "hotpotqa": hotpotqa, "eval-dev": eval_dev}


# Service ---------------------------------------------------------------------------------------


@contextmanager
def embedded_service(data_dir: Path) -> Iterator[Services]:
    """The embedded default (SQLite, a local index, the default embedder), no LLM."""
    settings = Settings(data_dir=data_dir)
    services = Services.start(
        settings, generator=UnavailableGenerator("none", "retrieval benchmark")
    )
    try:
        yield services
    finally:
        services.close()


def ingest(
    services: Services, collection: str, documents: dict[str, str], embedder_id: str
) -> tuple[int, float]:
    """Store every document as an upload's worker would: recorded as an ingest job, then
    parsed, chunked, embedded and stored with the worker's own functions; returns (chunks,
    seconds). Embedding is batched across documents (a worker embeds one document at a time,
    ~1 document/s on this shared machine, which would make a run take an hour)."""
    started = time.perf_counter()
    settings = services.settings
    with services.db.session() as session:
        created = repository.create_collection(session, collection, embedder_id)
        files = [
            repository.UploadedFile(
                name, detect_media_type(name, data), hashlib.sha256(data).hexdigest(), data
            )
            for name, data in ((n, t.encode()) for n, t in documents.items())
        ]
        job, outcomes = repository.create_ingest_job(session, created, files, [])
        job_id, embedder_id = job.id, created.embedder
    queued = [o.document_id for o in outcomes if o.status == "queued"]
    embedder = services.embedders.get(embedder_id)
    chunks = 0
    for i in range(0, len(queued), STORE_BATCH):
        batch = queued[i : i + STORE_BATCH]
        with services.db.session() as session:
            work = []
            for document_id in batch:
                loaded = repository.load_document_for_processing(session, document_id)
                if loaded is None:
                    continue
                document, data = loaded
                text = extract_text(data, document.media_type)
                work.append(
                    (
                        document,
                        text,
                        chunk_text(text, settings.ingest.chunk_size, settings.ingest.chunk_overlap),
                    )
                )
            vectors = embedder.embed_documents([s.text for _, _, spans in work for s in spans])
            offset = 0
            for document, text, spans in work:
                repository.store_chunks(
                    session,
                    document,
                    text,
                    [(s.ordinal, s.start, s.end, s.text) for s in spans],
                    embedder_id,
                    vectors[offset : offset + len(spans)],
                )
                offset += len(spans)
                chunks += len(spans)
            repository.refresh_ingest_job(session, job_id)
        log(f"  stored {min(i + STORE_BATCH, len(queued))}/{len(queued)} documents")
    return chunks, time.perf_counter() - started


def searcher_for(services: Services, variant: Variant) -> Searcher:
    retrieval = RetrievalSettings(rrf_k=variant.rrf_k, candidates=variant.candidates)
    embedders = services.embedders
    if variant.query_encoder != services.settings.embedder.query_encoder:
        embedders = EmbedderPool(
            services.settings.embedder.model_copy(update={"query_encoder": variant.query_encoder})
        )
    return Searcher(
        services.db,
        embedders,
        services.indexes,
        services.lexical,
        services.settings.index,
        retrieval,
    )


def measure(
    services: Services, collection: str, dataset: Dataset, variant: Variant, k: int
) -> dict[str, Any]:
    searcher = searcher_for(services, variant)
    per_question: list[int] = []  # 1 where a gold document was in the top k (paired comparisons)
    all_hits = 0
    latencies: list[float] = []
    for question in dataset.questions:
        started = time.perf_counter()
        result = searcher.search(collection, question.text, k, variant.mode)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - started) * 1000)
        found = {h.filename for h in result.hits} & question.gold
        per_question.append(int(bool(found)))
        all_hits += found == question.gold
    n = len(dataset.questions)
    return {
        "variant": variant.label,
        "mode": variant.mode,
        "rrf_k": variant.rrf_k,
        "candidates": variant.candidates,
        "recall_any": sum(per_question) / n,
        "recall_all": all_hits / n,
        "latency": latency_summary(latencies),
        "hits_any": per_question,
    }


# Report ---------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]], k: int) -> str:
    rows = []
    for dataset in results:
        for r in dataset["variants"]:
            recall = f"{r['recall_any']:.3f}"
            both = f"{r['recall_all']:.3f}" if dataset["multi_gold"] else ""
            rows.append(
                [
                    dataset["dataset"],
                    dataset["questions"],
                    dataset["documents"],
                    dataset["embedder"],
                    r["variant"],
                    recall,
                    both,
                    r["latency"]["p50_ms"],
                ]
            )
    headers = [
        "dataset",
        "questions",
        "documents",
        "document embedder",
        "retrieval",
        f"recall@{k} (any gold)",
        f"recall@{k} (both gold)",
        "search p50 ms",
    ]
    return markdown_table(headers, rows)


def write_doc(markdown: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the {BEGIN} … {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="squad,hotpotqa,eval-dev")
    parser.add_argument(
        "--embedders", default="", help="document embedders, comma-separated (default: the default)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/retrieval.md")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        with embedded_service(Path(tmp)) as services:
            embedder_ids = args.embedders.split(",") if args.embedders else []
            embedder_ids = embedder_ids or [services.embedders.default_id()]
            known = services.embedders.specs()
            for key in args.datasets.split(","):
                dataset = LOADERS[key](args.questions, random.Random(args.seed))
                for embedder_id in embedder_ids:
                    if embedder_id not in known:
                        raise SystemExit(f"unknown embedder {embedder_id!r}: {sorted(known)}")
                    collection = re.sub(r"[^A-Za-z0-9]", "-", f"{key}-{embedder_id}")
                    count = len(dataset.documents)
                    log(f"{dataset.name}, {embedder_id}: ingesting {count} documents")
                    chunks, seconds = ingest(services, collection, dataset.documents, embedder_id)
                    log(f"{dataset.name}: {chunks} chunks in {seconds:.0f} s")
                    variants = []
                    has_twin = embedder_id in QUERY_TWINS
                    for variant in VARIANTS:
                        if variant.query_encoder == "same" and not has_twin:
                            continue  # its own encoder is the only one: same as the plain row
                        variants.append(measure(services, collection, dataset, variant, args.k))
                        log(f"  {variant.label}: {variants[-1]['recall_any']:.3f}")
                    results.append(
                        {
                            "dataset": dataset.name,
                            "embedder": embedder_id,
                            "questions": len(dataset.questions),
                            "documents": len(dataset.documents),
                            "chunks": chunks,
                            "ingest_s": round(seconds, 1),
                            "multi_gold": dataset.multi_gold,
                            "variants": variants,
                        }
                    )
    markdown = table(results, args.k)
    command = (
        f"`.venv/bin/python scripts/bench_retrieval.py --questions {args.questions} "
        f"--k {args.k} --seed {args.seed} --datasets {args.datasets}"
        + (f" --embedders {args.embedders}" if args.embedders else "")
        + "`"
    )
    total = time.perf_counter() - started
    stamp = time.strftime("%Y-%m-%d")
    block = f"{markdown}\n\nOne run, {stamp}, {total:.0f} s in all on this machine: {command}"
    print(block)
    path = write_json("bench-retrieval", {"machine": machine_info(), "results": results})
    log(f"figures in {path}")
    if not args.no_write:
        write_doc(block)
        log(f"table written to {DOC}")


if __name__ == "__main__":
    main()
