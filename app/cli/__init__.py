"""The `rag` command line (operations contract in ../shared/API.md).

One module per command group: server.py (processes and the database), documents.py (client
commands against a running service), bench.py (quality runs: bench, eval, bench-compare),
keys.py (API keys), models.py (the offline model catalog), train.py (trajectories, adapters
and the answer critic), adapters.py (the adapter registry); http.py holds what the client
commands share.
"""

from __future__ import annotations

import os
import sys

import typer

from app.cli import bench, documents, server
from app.cli.adapters import adapters
from app.cli.keys import keys
from app.cli.models import models
from app.cli.train import train

cli = typer.Typer(
    help="Retrieval-augmented generation service with self-reasoning.", no_args_is_help=True
)
cli.add_typer(adapters, name="adapters")
cli.add_typer(keys, name="keys")
cli.add_typer(models, name="models")
cli.add_typer(train, name="train")
cli.command()(server.serve)
cli.command()(server.worker)
cli.command()(server.migrate)
cli.command()(server.requeue)
cli.command()(documents.ingest)
cli.command()(documents.search)
cli.command()(documents.ask)
cli.command(name="migrate-embedder")(documents.migrate_embedder)
cli.command(name="eval")(bench.evaluate)
cli.command()(bench.bench)
cli.command(name="bench-compare")(bench.compare)


def main() -> None:
    # Keep tokenizers from forking warnings; the model is local either way.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(args=sys.argv[1:])
