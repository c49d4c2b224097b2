"""The embedded path's speed against llama.cpp's raw speed on the same prompt (one run).

For one eval-dev question with its top 5 chunks, the pipeline's relevance prompt is run
(1) raw: llama-cpp-python `create_completion` on the prompt tokens, no grammar, fresh KV cache;
(2) through the service's backend (`LlamaCppGenerator.generate`), with the step's JSON schema,
fresh KV cache; (3) the next step (evidence) through the backend, reusing the shared prefix.
Prompt and generation tokens/s come from llama.cpp's own perf counters, so they are comparable.

    .venv/bin/python scripts/bench_llamacpp.py [--model NAME] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import llama_cpp  # noqa: E402

from core.settings import LlamaCppSettings  # noqa: E402
from generation.llm.generator import without_length_bounds  # noqa: E402
from generation.llm.llamacpp import LlamaCppGenerator, _grammar  # noqa: E402
from generation.model_files.catalog import DEFAULT_MODEL  # noqa: E402
from generation.reasoning import prompts  # noqa: E402
from retrieval.search import Hit  # noqa: E402

CORPUS = REPO.parent / "shared" / "eval-dev" / "corpus"
QUESTION = "What does SMTP stand for?"
FILES = (
    "foldoc-simple-mail-transfer-protocol-245.md",
    "foldoc-basic-input-output-system-20.md",
    "foldoc-acid-293.md",
    "foldoc-accelerated-graphics-port-662.md",
    "foldoc-desktop-management-interface-300.md",
)


def perf(llm: Any) -> dict[str, float]:
    data = llama_cpp.llama_perf_context(llm.ctx)
    return {
        "prompt_tokens": data.n_p_eval,
        "prompt_tok_s": round(data.n_p_eval / (data.t_p_eval_ms / 1000), 1)
        if data.t_p_eval_ms
        else 0.0,
        "gen_tokens": data.n_eval,
        "gen_tok_s": round(data.n_eval / (data.t_eval_ms / 1000), 1) if data.t_eval_ms else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    settings = LlamaCppSettings(model=args.model, models_dir=REPO / "models")
    generator = LlamaCppGenerator(settings)
    model = generator._base  # the pipeline's own llama.cpp instance
    llm = model.llm
    hits = []
    for i, name in enumerate(FILES, 1):
        text = (CORPUS / name).read_text()[:1000]
        hits.append(Hit(i, f"d{i}", name, text, 1.0, 0, len(text)))
    passages = prompts.make_passages(hits)
    system = prompts.system_message(QUESTION, passages)
    relevance = prompts.relevance_messages(system, QUESTION, passages)
    schema = prompts.relevance_schema(passages, 120)
    tokens = model.chat.prompt_tokens(relevance)  # what serving sends
    rows: dict[str, list[dict[str, float]]] = {"raw": [], "raw_grammar": [], "pipeline": []}
    reuse: list[dict[str, float]] = []
    for _ in range(args.repeat):
        for label, grammar in (("raw", None), ("raw_grammar", schema)):
            llm.reset()
            llm._ctx.kv_cache_clear()
            llama_cpp.llama_perf_context_reset(llm.ctx)
            llm.create_completion(
                tokens,
                max_tokens=args.max_tokens,
                temperature=0.0,
                grammar=_grammar(json.dumps(without_length_bounds(grammar))) if grammar else None,
            )
            rows[label].append(perf(llm))
        llm.reset()
        llm._ctx.kv_cache_clear()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        asyncio.run(generator.generate(relevance, schema=schema, max_tokens=args.max_tokens))
        rows["pipeline"].append(perf(llm))
        # The evidence step after it: the system prefix is reused from the KV cache.
        llama_cpp.llama_perf_context_reset(llm.ctx)
        evidence = prompts.evidence_messages(system, QUESTION, passages[:2], 3)
        done = asyncio.run(
            generator.generate(
                evidence,
                schema=prompts.evidence_schema(passages[:2], 3, 120),
                max_tokens=args.max_tokens,
            )
        )
        reuse.append({**perf(llm), "cached_tokens": done.cached_tokens})

    def best(values: list[dict[str, float]], key: str) -> float:
        return max(v[key] for v in values)

    raw_p, raw_g = best(rows["raw"], "prompt_tok_s"), best(rows["raw"], "gen_tok_s")
    print(f"model {generator.model}, prompt {len(tokens)} tokens, best of {args.repeat}")
    print("| path | prompt tok/s | vs raw | generation tok/s | vs raw |")
    print("| --- | --- | --- | --- | --- |")
    for label in rows:
        p, g = best(rows[label], "prompt_tok_s"), best(rows[label], "gen_tok_s")
        print(f"| {label} | {p} | {p / raw_p:.2f}× | {g} | {g / raw_g:.2f}× |")
    last = reuse[-1]
    print(
        f"evidence step after relevance: {last['prompt_tokens']} prompt tokens computed, "
        f"{last['cached_tokens']} reused from the KV cache"
    )


if __name__ == "__main__":
    main()
