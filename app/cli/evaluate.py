"""`rag eval`: answer and citation quality of each mode over a folder and a questions file."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from app.cli import documents, http


def evaluate(
    corpus: Annotated[Path, typer.Option(help="Folder of documents to ingest.")],
    questions: Annotated[Path, typer.Option(help="JSON lines: question, answers, doc.")],
    collection: str = "eval",
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    modes: Annotated[
        str, typer.Option(help="Comma-separated modes.")
    ] = "closed_book,one_call,steps",
    url: Annotated[
        str | None, typer.Option(help="A running service; default: an in-process embedded one.")
    ] = None,
    key: http.KeyOption = "",
    output: Annotated[Path | None, typer.Option(help="Also write the results as JSON.")] = None,
) -> None:
    """Ingest CORPUS, then report recall@k and answer/citation quality for each mode."""
    from rich.progress import Progress

    from generation.evaluation import Evaluator, load_questions, markdown_table

    items = load_questions(questions)[:limit]
    with http.connect(url, key) as client:
        documents.ingest_directory(client, corpus, collection, "**/*")
        evaluator = Evaluator(client, collection, top_k)
        recall = evaluator.recall(items)
        rows = []
        with Progress() as progress:
            for mode in modes.split(","):
                task = progress.add_task(mode, total=len(items))
                score = evaluator.score_mode(mode, items, partial(progress.advance, task))
                rows.append(score.row())
    table = markdown_table(recall, top_k, rows)
    typer.echo(table)
    if output:
        output.write_text(json.dumps({"recall": recall, "top_k": top_k, "modes": rows}, indent=2))
