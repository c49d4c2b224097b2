"""llama.cpp thread counts under load: one reasoning step's prefill and decode speed with each
choice of (decode threads, prompt threads), alone, while this process encodes chunks with the
embedder (as the embedded default's in-process worker does during an upload), and beside
another process busy on every core.

    .venv/bin/python scripts/bench_threads.py [--model NAME] [--repeat 2]

Prints a markdown table: prefill tokens/s, decode tokens/s and the step's wall time per
condition and thread choice (best of --repeat), and each wall time against the same condition's
first choice.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import llama_cpp  # noqa: E402
from bench_llamacpp import builtin_calls  # noqa: E402

from core.settings import EmbedderSettings, LlamaCppSettings  # noqa: E402
from generation.llm.grammar_sampler import make_llama_class  # noqa: E402
from generation.llm.idle_cores import IdleCores  # noqa: E402
from generation.llm.llamacpp import ChatRenderer, schema_grammar  # noqa: E402
from generation.model_files.catalog import DEFAULT_MODEL  # noqa: E402
from generation.model_files.resolve import resolve_model  # noqa: E402

CORPUS = REPO.parent / "shared" / "eval-dev" / "corpus"
# (decode, prompt) threads; (0, 0): the service's own choice (generation/llm/idle_cores.py).
CHOICES = ((2, 2), (1, 2), (1, 1), (0, 0))


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_neighbour() -> Iterator[None]:
    """Another process keeping every core busy."""
    workers = [
        multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        yield
    finally:
        for worker in workers:
            worker.terminate()


@contextmanager
def ingesting() -> Iterator[None]:
    """This process encoding chunks with the service's embedder in a thread, as the embedded
    default's worker does while an upload is ingested."""
    from retrieval.embedders import EmbedderPool

    embedder = EmbedderPool(EmbedderSettings()).get("all-MiniLM-L6-v2")
    texts = [p.read_text()[:1000] for p in sorted(CORPUS.glob("*.md"))[:256]]
    stop = threading.Event()

    def encode() -> None:
        while not stop.is_set():
            for start in range(0, len(texts), 32):
                if stop.is_set():
                    return
                embedder.embed_documents(texts[start : start + 32])

    thread = threading.Thread(target=encode, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def alone() -> Iterator[None]:
    yield


def step(llm: Any, tokens: list[int], grammar: Any, max_tokens: int) -> dict[str, float]:
    llm.reset()
    llm._ctx.kv_cache_clear()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    started = time.perf_counter()
    result = llm.create_completion(
        tokens, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.15, grammar=grammar
    )
    wall = time.perf_counter() - started
    perf = llama_cpp.llama_perf_context(llm.ctx)
    generated = int(result["usage"]["completion_tokens"])
    prefill = perf.t_p_eval_ms / 1000
    return {
        "prefill_tok_s": perf.n_p_eval / max(prefill, 1e-9),
        "decode_tok_s": generated / max(wall - prefill, 1e-9),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", help="one condition: alone, ingesting or busy")
    args = parser.parse_args()

    settings = LlamaCppSettings(model=args.model, models_dir=REPO / "models")
    path = str(resolve_model(settings).path)
    llm = make_llama_class()(model_path=path, n_ctx=4096, verbose=False, seed=0)
    idle = IdleCores()
    chosen = idle.cores
    _, messages, schema, max_tokens = builtin_calls()[0]  # the relevance step
    tokens = ChatRenderer(llm).prompt_tokens(messages)
    grammar = schema_grammar(schema)
    conditions: dict[str, Callable[[], Any]] = {
        "alone": alone,
        "this process ingesting": ingesting,
        "another process busy": busy_neighbour,
    }
    print(f"model {Path(path).name}, relevance step, {len(tokens)} prompt tokens")
    print("| condition | decode/prompt threads | prefill tok/s | decode tok/s | step s | vs 2/2 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, condition in conditions.items():
        if args.only and args.only not in label:
            continue
        with condition():
            first = None
            for decode_threads, prompt_threads in CHOICES:
                runs = []
                for _ in range(args.repeat):
                    if decode_threads == 0:  # the service's choice, made before each call
                        chosen = idle.threads()
                        llama_cpp.llama_set_n_threads(llm.ctx, chosen, chosen)
                    else:
                        llama_cpp.llama_set_n_threads(llm.ctx, decode_threads, prompt_threads)
                    runs.append(step(llm, tokens, grammar, max_tokens))
                best = min(runs, key=lambda r: r["wall"])
                first = first or best["wall"]
                choice = (
                    f"{decode_threads}/{prompt_threads}" if decode_threads else f"auto ({chosen})"
                )
                print(
                    f"| {label} | {choice} "
                    f"| {best['prefill_tok_s']:.0f} | {best['decode_tok_s']:.1f} "
                    f"| {best['wall']:.1f} | {best['wall'] / first:.2f}× |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
