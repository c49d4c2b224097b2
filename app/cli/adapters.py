"""`rag adapters`: register, list and remove LoRA adapters. Like `rag keys`, an operator command
that talks to the database directly; a running server loads a new registration the first time
a query names it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import RagError

if TYPE_CHECKING:
    from core.settings import Settings
    from generation.llm.lora_adapters import AdapterSource

adapters = typer.Typer(help="Register, list and remove LoRA adapters (a query's `adapter`).")


def _served_base(settings: Settings) -> tuple[list[str], Path | None]:
    """The names the configured generator's model goes by, and its file when embedded."""
    if settings.generation.backend == "openai":
        return [settings.generation.openai.model or "unknown"], None
    from generation.model_files.resolve import resolve_model

    resolved = resolve_model(settings.generation.llamacpp)
    names = [resolved.catalog.name] if resolved.catalog else []
    return [*names, resolved.name], resolved.path


def _check_loads(settings: Settings, source: AdapterSource, base_file: Path) -> None:
    """The embedded backend: llama.cpp applies the LoRA to the served base, or says why not."""
    from generation.llm.llamacpp import load_lora

    small = settings.generation.llamacpp.model_copy(update={"n_ctx": 512})
    load_lora(small, base_file, source.file_for("gguf"))


@adapters.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The name queries use (their `adapter`).")],
    path: Annotated[
        str,
        typer.Argument(
            help="An adapter folder (rag train adapter), a GGUF LoRA file, or for vLLM a PEFT "
            "folder on its host."
        ),
    ],
) -> None:
    """Register an adapter for the configured generator; one for another base model is refused."""
    from app.cli.keys import open_database
    from core import repository
    from core.settings import get_settings
    from generation.llm.lora_adapters import check_base, read_source
    from generation.model_files.resolve import ModelConfigError

    settings = get_settings()
    embedded = settings.generation.backend == "llamacpp"
    try:
        served, base_file = _served_base(settings)
        source = read_source(path, must_exist=embedded)
        check_base(source, served, base_file)
        if base_file is not None:
            _check_loads(settings, source, base_file)
    except (RagError, ModelConfigError) as exc:
        typer.echo(f"cannot register {name}: {getattr(exc, 'message', exc)}", err=True)
        raise typer.Exit(2) from exc
    db = open_database()
    try:
        with db.session() as session:
            repository.put_adapter(
                session, name, source.base_model or served[0], path, source.manifest
            )
    finally:
        db.dispose()
    typer.echo(f"registered {name} ({source.base_model or served[0]}) at {path}")


@adapters.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Registered adapters and the bundled ones for the configured base model (under
    generation.adapters_dir), as GET /v1/adapters lists them."""
    from app.cli.keys import open_database
    from core.settings import get_settings
    from generation.llm.lora_adapters import discover, merge_listing, registered_rows
    from generation.model_files.resolve import ModelConfigError

    settings = get_settings()
    folder = settings.generation.adapters_dir
    bundled = discover(folder) if folder is not None else {}
    try:
        names, _ = _served_base(settings)
    except ModelConfigError:  # the base is not installed here: show every bundled adapter
        names = [s.base_model for s in bundled.values() if s.base_model]
    db = open_database()
    try:
        rows = registered_rows(db)
    finally:
        db.dispose()
    for info in merge_listing(rows, bundled, names, names[0] if names else "", {}):
        if as_json:
            item = {
                "name": info.name,
                "base_model": info.base_model,
                "path": info.path,
                "source": info.source,
                "data": info.manifest.get("trajectories") or [],
                "training": info.manifest.get("training") or {},
                "eval": info.manifest.get("eval") or {},
            }
            typer.echo(json.dumps(item))
        else:
            typer.echo(f"{info.name:<28} {info.base_model:<32} {info.source:<10} {info.path}")


@adapters.command("remove")
def remove(name: Annotated[str, typer.Argument(help="A registered adapter.")]) -> None:
    """Remove a registration (the files stay; a server that loaded it keeps it until restart)."""
    from app.cli.keys import open_database
    from core import repository

    db = open_database()
    try:
        with db.session() as session:
            repository.delete_adapter(session, name)
    except RagError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    typer.echo(f"removed {name}")
