"""Do parallel sequences in one llama.cpp context serve concurrent questions faster on CPU?

The embedded backend answers one generation at a time. llama.cpp can instead hold several
sequences in one context and decode one token of each in a single batch (what its own server
does with `--parallel`). This measures that against one-at-a-time on the same prompts, in one
run, on the same loaded weights:

- prompts: the pipeline's one-call prompt (`generation.reasoning.prompts`) for N eval-dev
  questions, each with its own gold document and four others as passages, rendered by the
  service's chat renderer, so the lengths are what serving sends;
- sequential: for each prompt, prefill, then greedy-decode `--tokens` tokens (batch of one);
- parallel: prefill every prompt into its own sequence, then decode all N together, one token
  of each per `llama_decode` call;
- both generate exactly `--tokens` tokens per prompt (end of text ignored), so the work is equal.

Prints wall seconds, the ratio sequential / parallel (throughput gain), and the decode-only
tokens/s of each, for every N in `--parallel`.

    .venv/bin/python scripts/bench_llamacpp_parallel.py [--model NAME] [--parallel 1,2,4,8]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import llama_cpp  # noqa: E402
from llama_cpp import Llama  # noqa: E402

from generation.llm.llamacpp import ChatRenderer  # noqa: E402
from generation.model_files.catalog import DEFAULT_MODEL, catalog_model  # noqa: E402
from generation.reasoning import prompts  # noqa: E402
from retrieval.search import Hit  # noqa: E402

EVAL_DEV = REPO.parent / "shared" / "eval-dev"
PASSAGE_CHARS = 700  # about one chunk


def one_call_prompts(renderer: ChatRenderer, n: int, seed: int) -> list[list[int]]:
    """N one-call prompts (token ids) for eval-dev questions: gold document plus four others."""
    rows = [json.loads(line) for line in (EVAL_DEV / "questions.jsonl").open()]
    rng = random.Random(seed)
    picked = rng.sample(rows, n)
    names = sorted({row["doc"] for row in rows})
    out = []
    for row in picked:
        others = rng.sample([name for name in names if name != row["doc"]], 4)
        docs = [row["doc"], *others]
        rng.shuffle(docs)
        hits = []
        for i, name in enumerate(docs, 1):
            text = (EVAL_DEV / "corpus" / name).read_text()[:PASSAGE_CHARS]
            hits.append(Hit(i, f"d{i}", name, text, 1.0, 0, len(text)))
        passages = prompts.make_passages(hits)
        system = prompts.system_message(row["question"], passages)
        out.append(renderer.prompt_tokens(prompts.one_call_messages(system, row["question"])))
    return out


class Context:
    """A llama.cpp context over already loaded weights, holding up to `n_seq` sequences."""

    def __init__(self, model: Any, n_seq: int, n_ctx_per_seq: int, threads: int, n_batch: int):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_seq * n_ctx_per_seq
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = threads
        params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create the context")
        self.n_batch = n_batch
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) items."""
        batch = self.batch
        batch.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        if llama_cpp.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def argmax(self, i: int) -> int:
        row = llama_cpp.llama_get_logits_ith(self.ctx, i)
        logits = np.ctypeslib.as_array(
            ctypes.cast(row, ctypes.POINTER(ctypes.c_float)), (self.n_vocab,)
        )
        return int(logits.argmax())

    def prefill(self, tokens: list[int], seq: int) -> int:
        """Feed a prompt into sequence `seq`; returns the greedy next token."""
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            last = start + len(part) == len(tokens)
            self.decode(
                [(t, start + j, seq, last and j == len(part) - 1) for j, t in enumerate(part)]
            )
        return self.argmax((len(tokens) - 1) % self.n_batch)  # the last chunk's last token


Timed = tuple[float, float, list[list[int]]]  # wall s, decode s, the tokens generated


def sequential(ctx: Context, prompt_tokens: list[list[int]], n_tokens: int) -> Timed:
    """Answer the prompts one after another: each alone, as a batch of one sequence."""
    runs = [parallel(ctx, [tokens], n_tokens) for tokens in prompt_tokens]
    return (
        sum(wall for wall, _, _ in runs),
        sum(decode for _, decode, _ in runs),
        [out for _, _, (out,) in runs],
    )


def parallel(ctx: Context, prompt_tokens: list[list[int]], n_tokens: int) -> Timed:
    """Answer the prompts as sequences of one context, decoded together."""
    ctx.clear()
    start = time.perf_counter()
    outputs = [[ctx.prefill(tokens, seq)] for seq, tokens in enumerate(prompt_tokens)]
    began = time.perf_counter()
    for step in range(n_tokens - 1):
        ctx.decode(
            [
                (out[-1], len(tokens) + step, seq, True)
                for seq, (out, tokens) in enumerate(zip(outputs, prompt_tokens, strict=True))
            ]
        )
        for i, out in enumerate(outputs):
            out.append(ctx.argmax(i))
    end = time.perf_counter()
    return end - start, end - began, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--parallel", default="1,2,4,8", help="comma-separated sequence counts")
    parser.add_argument("--tokens", type=int, default=96, help="generated per prompt")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    entry = catalog_model(args.model)
    if entry is None:
        parser.error(f"{args.model!r} is not a catalog model")
    # Loads the weights once; each measured context below is made over them.
    llm = Llama(model_path=str(entry.path(args.models_dir)), n_ctx=256, verbose=False)
    renderer = ChatRenderer(llm)
    counts = [int(n) for n in args.parallel.split(",")]
    all_prompts = one_call_prompts(renderer, max(counts), args.seed)
    # Each sequence's share of the context, in llama.cpp's 256-token steps.
    per_seq = -(-(max(len(p) for p in all_prompts) + args.tokens) // 256) * 256
    print(
        f"model {args.model}, {args.threads} threads, {args.tokens} tokens generated per prompt, "
        f"prompts {min(map(len, all_prompts))}-{max(map(len, all_prompts))} tokens"
    )
    print(
        "| sequences | sequential s | parallel s | gain | decode tok/s: sequential | parallel "
        "| same greedy output |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in counts:
        ctx = Context(llm.model, n, per_seq, args.threads, 512)
        try:
            batch = all_prompts[:n]
            parallel(ctx, batch[:1], 4)  # warm-up
            seq_s, seq_decode, seq_out = sequential(ctx, batch, args.tokens)
            par_s, par_decode, par_out = parallel(ctx, batch, args.tokens)
        finally:
            ctx.close()
        decoded = n * (args.tokens - 1)
        # Batched kernels may round differently: a check that each sequence kept its own
        # state (a mix-up gives different text from the first tokens), not a bitwise one.
        same = sum(a == b for a, b in zip(seq_out, par_out, strict=True))
        print(
            f"| {n} | {seq_s:.2f} | {par_s:.2f} | {seq_s / par_s:.2f}× | "
            f"{decoded / seq_decode:.1f} | {decoded / par_decode:.1f} | {same}/{n} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
