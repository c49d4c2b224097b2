"""The document encoder alone: bfloat16 against float32 by batch size, and the cost of encode calls
as small as an ingestion task's.

    .venv/bin/python scripts/bench_encoder.py [--corpus DIR] [--chunks 400] [--rounds 2]

The chunks are the corpus's, cut as ingestion cuts them (scripts/bench_ingest.py), the first
`--chunks` of them in corpus order. The model is the bundled all-MiniLM-L6-v2 on torch (CPU).

- Batch size: one `SentenceTransformer.encode` call over all the chunks, float32 at batch 64
  (the raw baseline of bench_ingest.py) next to bfloat16 autocast at batch 16 to 256.
- Call size: bfloat16, batch 64, the chunks split into consecutive calls of N chunks, as an
  ingestion task encodes the chunks of its documents (eval-dev: about 11 chunks per 8-document
  task). sentence-transformers sorts by length within a call only, so small calls pad more.

Variants run interleaved, `--rounds` times; the medians are compared. Prints Markdown tables and
writes bench-results/encoder-*.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_ingest  # noqa: E402
from bench_common import REPO_ROOT, log, machine_info, markdown_table, write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "eval-dev" / "corpus"
    )
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval.embedders import _bundled_minilm_path

    texts, _, _ = bench_ingest.chunk_corpus(bench_ingest.load_corpus(args.corpus, None))
    texts = texts[: args.chunks]
    model = SentenceTransformer(_bundled_minilm_path(), device="cpu", local_files_only=True)

    def encode(batch: int, bf16: bool, call: int) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(texts), call):
                model.encode(
                    texts[i : i + call],
                    batch_size=batch,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        return time.perf_counter() - started

    one = len(texts)
    batches = [(64, False, one)] + [(b, True, one) for b in (16, 32, 64, 128, 256)]
    calls = [(64, True, c) for c in (11, 22, 44, 88, 176)]
    variants = list(dict.fromkeys(batches + calls))
    encode(64, True, one)  # warm-up
    seconds: dict[tuple[int, bool, int], list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        log(f"round {r + 1} of {args.rounds}: {len(variants)} variants, {len(texts)} chunks")
        for variant in variants:
            seconds[variant].append(encode(*variant))
    median = {v: statistics.median(s) for v, s in seconds.items()}

    def row(v: tuple[int, bool, int], base: float) -> list[Any]:
        batch, bf16, call = v
        return [
            "bfloat16" if bf16 else "float32",
            batch,
            "all" if call == one else call,
            round(median[v], 2),
            round(len(texts) / median[v], 1),
            f"{base / median[v]:.2f}x",
        ]

    headers = ["precision", "batch", "chunks per call", "s", "chunks/s"]
    float32 = median[(64, False, one)]
    print(f"### Batch size, one call over {len(texts)} chunks\n")
    print(markdown_table([*headers, "vs float32 batch 64"], [row(v, float32) for v in batches]))
    whole = median[(64, True, one)]
    print("\n### Call size, bfloat16, batch 64\n")
    rows = [row(v, whole) for v in [(64, True, one), *calls]]
    print(markdown_table([*headers, "vs one call"], rows))
    results = {
        "machine": machine_info(),
        "args": vars(args),
        "seconds": [
            {"batch": b, "bfloat16": f, "call": c, "runs": seconds[(b, f, c)]}
            for b, f, c in variants
        ],
    }
    log(f"results: {write_results('encoder', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
