"""`rag adapters`: register, list and remove LoRA adapters. Like `rag keys`, an operator command
that talks to the database directly; a running server loads a new registration the first time
a query names it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import RagError

if TYPE_CHECKING:
    from core.settings import Settings
    from generation.adapters import AdapterSource

adapters = typer.Typer(help="Register, list and remove LoRA adapters (a query's `adapter`).")


def _served_base(settings: Settings) -> tuple[list[str], Path | None]:
    """The names the configured generator's model goes by, and its file when embedded."""
    if settings.generation.backend == "openai":
        return [settings.generation.openai.model or "unknown"], None
    from generation.local_models import resolve_model

    resolved = resolve_model(settings.generation.llamacpp)
    names = [resolved.catalog.name] if resolved.catalog else []
    return [*names, resolved.name], resolved.path


def _check_loads(settings: Settings, source: AdapterSource, base_file: Path) -> None:
    """The embedded backend: llama.cpp applies the LoRA to the served base, or says why not."""
    from generation.llamacpp_backend import load_lora

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
    from generation.adapters import check_base, read_source
    from generation.local_models import ModelConfigError

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


def _row(row: Any) -> dict[str, Any]:
    manifest = row.manifest or {}
    return {
        "name": row.name,
        "base_model": row.base_model,
        "path": row.path,
        "created_at": row.created_at.isoformat(),
        "training": manifest.get("training") or {},
        "eval": manifest.get("eval") or {},
    }


@adapters.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Registered adapters and the bundled ones (under generation.adapters_dir)."""
    from app.cli.keys import open_database
    from core import repository
    from core.settings import get_settings
    from generation.adapters import discover

    settings = get_settings()
    db = open_database()
    try:
        with db.session() as session:
            rows = [_row(r) for r in repository.list_adapters(session)]
    finally:
        db.dispose()
    for item in rows:
        item["source"] = "registered"
    registered = {r["name"] for r in rows}
    folder = settings.generation.adapters_dir
    for name, source in (discover(folder) if folder is not None else {}).items():
        if name not in registered:
            manifest = source.manifest
            rows.append(
                {
                    "name": name,
                    "base_model": source.base_model or "",
                    "path": source.path,
                    "source": "bundled",
                    "training": manifest.get("training") or {},
                    "eval": manifest.get("eval") or {},
                }
            )
    rows.sort(key=lambda r: r["name"])
    for item in rows:
        if as_json:
            typer.echo(json.dumps(item))
        else:
            name, base, source = item["name"], item["base_model"], item["source"]
            typer.echo(f"{name:<28} {base:<32} {source:<10} {item['path']}")


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
