"""`rag bench` with the embedded model's replies remembered on disk, for tuning one step.

    .venv/bin/python scripts/bench_memo.py bench squad --split train --questions 20 \
        --max-documents 60 --modes steps,one_call --model qwen2.5-coder-0.5b-instruct

takes the same arguments as `rag bench`. The embedded backend decodes greedily, so the same
prompt and schema give the same reply: every generator call is keyed by (model, adapter,
messages, schema, max_tokens) and a reply seen before is replayed from the memo file
(`--memo`, default bench-results/memo.sqlite) instead of generated again. A change to one step,
or to the checks after the model, then re-runs only the calls it changes: a 12-minute run of
20 questions takes 2-3 minutes. Figures match a plain `rag bench` run (docs/benchmarks.md
names the runs made this way); latencies of replayed calls are not real, so time with
`rag bench`. Dev tooling only: the service never loads this. To run an older copy of the code
against a memo, use scripts/run_tree.py (PYTHONPATH alone still imports this checkout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from generation.llm import llamacpp
from generation.llm.generator import Completion, Message, TextSink


class Memo:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "create table if not exists memo (key text primary key, completion text, messages text)"
        )
        # The request beside the reply, so a recorded run's prompts can be replayed elsewhere
        # (scripts/bench_llamacpp.py --memo).
        columns = [row[1] for row in self._db.execute("pragma table_info(memo)")]
        if "request" not in columns:
            self._db.execute("alter table memo add column request text")
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(
        model: str, adapter: str | None, messages: list[Message], schema: Any, tokens: int
    ) -> str:
        blob = json.dumps([model, adapter, messages, schema, tokens], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("select completion from memo where key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Completion(**{**json.loads(row[0]), "seconds": 0.0})

    def put(
        self,
        key: str,
        completion: Completion,
        messages: list[Message],
        schema: Any = None,
        max_tokens: int = 0,
    ) -> None:
        request = json.dumps({"schema": schema, "max_tokens": max_tokens})
        with self._lock:
            self._db.execute(
                "insert or replace into memo values (?, ?, ?, ?)",
                (key, json.dumps(dataclasses.asdict(completion)), json.dumps(messages), request),
            )
            self._db.commit()


def install(memo: Memo) -> None:
    """Route the embedded backend's `generate` through the memo."""
    generate = llamacpp.LlamaCppGenerator.generate

    async def remembered(
        self: llamacpp.LlamaCppGenerator,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        key = memo.key(self.model, adapter, messages, schema, max_tokens)
        if (known := memo.get(key)) is not None:
            if on_text is not None:  # a replayed reply streams in one piece
                on_text(known.text)
            return known
        completion = await generate(
            self, messages, schema=schema, max_tokens=max_tokens, adapter=adapter, on_text=on_text
        )
        memo.put(key, completion, messages, schema, max_tokens)
        return completion

    llamacpp.LlamaCppGenerator.generate = remembered  # type: ignore[method-assign]


def main() -> None:
    args = sys.argv[1:]
    path = Path("bench-results/memo.sqlite")
    if "--memo" in args:
        at = args.index("--memo")
        path = Path(args[at + 1])
        del args[at : at + 2]
    memo = Memo(path)
    install(memo)
    from app.cli import main as rag

    sys.argv = ["rag", *args]
    try:
        rag()
    finally:
        print(f"memo {path}: {memo.hits} replayed, {memo.misses} generated", file=sys.stderr)


if __name__ == "__main__":
    main()
