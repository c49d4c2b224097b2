"""Constrained decoding against free text, per step schema, on the pipeline's own prompts.

Every step call is decoded three times from an empty KV cache on one model file:
  free     no grammar (the speed the model decodes at);
  grammar  llama-cpp-python's own chain (the grammar checks the whole vocabulary every token);
  service  the service's sampler (generation/llm/grammar_sampler.py: the best token first).
For each, the time splits into prefill (llama.cpp's prompt time), decode (its generation time)
and the rest of the wall time, which is sampling: the grammar, for the constrained ones.
Decode tokens/s = completion tokens / (wall − prefill). The report gives, per schema, that rate
and its ratio to free text, and whether the service's replies are the plain grammar's, token for
token.

The step calls come from a memo file that `scripts/bench_memo.py` wrote during a `rag bench` run
(so they are the train split's real prompts), or else one eval-dev question's steps:

    .venv/bin/python scripts/bench_memo.py --memo /tmp/memo.sqlite bench squad --split train \
        --questions 20 --max-documents 60 --modes steps,one_call
    .venv/bin/python scripts/bench_llamacpp.py --memo /tmp/memo.sqlite [--calls 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import llama_cpp  # noqa: E402

from core.settings import LlamaCppSettings  # noqa: E402
from generation.llm.generator import Message  # noqa: E402
from generation.llm.grammar_sampler import make_llama_class  # noqa: E402
from generation.llm.llamacpp import ChatRenderer, schema_grammar  # noqa: E402
from generation.model_files.catalog import DEFAULT_MODEL  # noqa: E402
from generation.model_files.resolve import resolve_model  # noqa: E402
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
Call = tuple[str, list[Message], dict[str, Any], int]


def schema_name(schema: dict[str, Any]) -> str:
    keys = list(schema.get("properties", {}))
    if keys and keys[0].startswith("document_"):
        return "relevance"
    if keys == ["evidence"]:
        return "evidence"
    if set(keys) == {"analysis", "answer"}:
        return "analysis"
    return "+".join(keys)  # one_call's and the others' own keys


def recorded_calls(memo: Path) -> list[Call]:
    db = sqlite3.connect(memo)
    calls = []
    for messages, request in db.execute("select messages, request from memo order by rowid"):
        if request is None:
            continue
        asked = json.loads(request)
        if asked["schema"] is None:
            continue
        schema = asked["schema"]
        calls.append((schema_name(schema), json.loads(messages), schema, asked["max_tokens"]))
    return calls


def builtin_calls() -> list[Call]:
    hits = []
    for i, name in enumerate(FILES, 1):
        text = (CORPUS / name).read_text()[:1000]
        hits.append(Hit(i, f"d{i}", name, text, 1.0, 0, len(text)))
    passages = prompts.make_passages(hits)
    system = prompts.system_message(QUESTION, passages)
    quotes = [passages[0].sentence_text(0)]
    return [
        (
            "relevance",
            prompts.relevance_messages(system, QUESTION, passages),
            prompts.relevance_schema(passages, 120),
            256,
        ),
        (
            "evidence",
            prompts.evidence_messages(system, QUESTION, passages[:2], 3),
            prompts.evidence_schema(passages[:2], 3, 120),
            200,
        ),
        (
            "analysis",
            prompts.analysis_messages(system, QUESTION, quotes),
            prompts.analysis_schema(300, 120),
            200,
        ),
    ]


def decode(llm: Any, tokens: list[int], grammar: Any, max_tokens: int) -> dict[str, Any]:
    llm.reset()
    llm._ctx.kv_cache_clear()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    started = time.perf_counter()
    result = llm.create_completion(
        tokens, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.15, grammar=grammar
    )
    wall = time.perf_counter() - started
    perf = llama_cpp.llama_perf_context(llm.ctx)
    prefill = perf.t_p_eval_ms / 1000
    generated = int(result["usage"]["completion_tokens"])
    return {
        "text": result["choices"][0]["text"],
        "tokens": generated,
        "prefill": prefill,
        "decode": perf.t_eval_ms / 1000,
        "sampling": max(wall - prefill - perf.t_eval_ms / 1000, 0.0),
        "tok_s": generated / max(wall - prefill, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--memo", type=Path, help="a memo file of scripts/bench_memo.py")
    parser.add_argument("--calls", type=int, default=6, help="recorded calls per schema")
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = parser.parse_args()

    settings = LlamaCppSettings(model=args.model, models_dir=REPO / "models")
    path = str(resolve_model(settings).path)
    threads = args.threads or os.cpu_count() or 1
    options = {
        "n_ctx": 4096,
        "n_threads": threads,
        "n_threads_batch": threads,
        "verbose": False,
        "seed": 0,
    }
    plain = llama_cpp.Llama(model_path=path, **options)
    service = make_llama_class()(model_path=path, **options)
    chat = ChatRenderer(service)

    calls = recorded_calls(args.memo) if args.memo else builtin_calls()
    per_schema: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        if len(per_schema[call[0]]) < args.calls:
            per_schema[call[0]].append(call)

    print(f"model {Path(path).name}, {sum(map(len, per_schema.values()))} step calls")
    print(
        "| schema | calls | tokens | free tok/s | grammar tok/s | vs free | service tok/s "
        "| vs free | same reply | prefill s | decode s | sampling s (grammar → service) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    counts: dict[str, Any] = {}
    for name, chosen in per_schema.items():
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        same = 0
        for _, messages, schema, max_tokens in chosen:
            tokens = chat.prompt_tokens(messages)
            grammar = schema_grammar(schema)
            rows["free"].append(decode(plain, tokens, None, max_tokens))
            rows["grammar"].append(decode(plain, tokens, grammar, max_tokens))
            rows["service"].append(decode(service, tokens, grammar, max_tokens))
            same += rows["grammar"][-1]["text"] == rows["service"][-1]["text"]
            found = service.grammar_sampler.counts
            for key, value in vars(found).items():
                counts.setdefault(name, defaultdict(int))[key] += value

        def rate(label: str, rows: dict[str, list[dict[str, Any]]] = rows) -> float:
            done = rows[label]
            return sum(r["tokens"] for r in done) / sum(r["tokens"] / r["tok_s"] for r in done)

        def mean(label: str, key: str, rows: dict[str, list[dict[str, Any]]] = rows) -> float:
            return statistics.fmean(r[key] for r in rows[label])

        free, grammar_rate, service_rate = rate("free"), rate("grammar"), rate("service")
        print(
            f"| {name} | {len(chosen)} | {mean('service', 'tokens'):.0f} | {free:.1f} "
            f"| {grammar_rate:.1f} | {grammar_rate / free:.2f}× | {service_rate:.1f} "
            f"| {service_rate / free:.2f}× | {same}/{len(chosen)} "
            f"| {mean('service', 'prefill'):.2f} | {mean('service', 'decode'):.2f} "
            f"| {mean('grammar', 'sampling'):.2f} → {mean('service', 'sampling'):.2f} |"
        )
    print()
    print("service sampler, tokens found: " + json.dumps({k: dict(v) for k, v in counts.items()}))


if __name__ == "__main__":
    main()
