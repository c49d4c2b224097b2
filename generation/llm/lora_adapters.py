"""LoRA adapters: what a registration points at, the check that an adapter fits the served base
model, and the registry that keeps registrations in the database and loads them into the
generator on first use.

An adapter folder is what `rag train adapter` writes: `adapter.json` (the manifest, format
rag-adapter/1: base model and its sha256, LoRA settings, training data and steps, eval scores),
`adapter.gguf` (llama.cpp) and `peft/` (vLLM). A bare GGUF LoRA file or a bare PEFT folder can be
registered too; it then has no manifest, and only the backend itself can tell whether it fits.

Adapters come from two places: registrations in the database (`rag adapters add`, POST
/admin/v1/adapters), and adapter folders under `generation.adapters_dir` (the shipped ones),
listed without a registration. Either kind is loaded into the generator when a query first
names it, so a registration made by the CLI reaches a running server without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from core import repository
from core.db import Database
from core.errors import RagError
from generation.llm.generator import Adapter, AdapterNotFound, Generator
from generation.model_files.install import file_sha256

log = logging.getLogger(__name__)

ADAPTER_FORMAT = "rag-adapter/1"
MANIFEST = "adapter.json"


@dataclass(frozen=True)
class AdapterSource:
    """A registration's target: the files each backend loads, and the manifest if any."""

    path: str
    gguf: str | None
    peft: str | None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def base_model(self) -> str | None:
        base = self.manifest.get("base_model")
        return str(base) if base else None

    def file_for(self, adapter_format: str) -> str:
        """The path the backend loads: a GGUF file for llama.cpp, a PEFT folder for vLLM."""
        chosen = self.gguf if adapter_format == "gguf" else self.peft
        if chosen is None:
            kind = "a GGUF LoRA (adapter.gguf)" if adapter_format == "gguf" else "a PEFT folder"
            raise RagError("bad_request", f"{self.path} holds no {kind} for this generator")
        return chosen


def read_source(path: str, *, must_exist: bool = True) -> AdapterSource:
    """Resolve an adapter folder (with adapter.json), a bare PEFT folder or a GGUF file.

    With `must_exist=False` (an OpenAI-compatible generator on another host) a path missing
    here is passed on as it is, for the generator to load and judge."""
    target = Path(path)
    if target.is_file():
        return AdapterSource(path, gguf=path, peft=None)
    if not target.is_dir():
        if must_exist:
            raise RagError("bad_request", f"adapter path not found: {path}")
        return AdapterSource(path, gguf=path, peft=path)
    manifest_file = target / MANIFEST
    if not manifest_file.is_file():
        if (target / "adapter_config.json").is_file():
            return AdapterSource(path, gguf=None, peft=path)
        raise RagError(
            "bad_request",
            f"{path} is neither an adapter folder ({MANIFEST}) nor a PEFT folder "
            "(adapter_config.json)",
        )
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        raise RagError("bad_request", f"cannot read {manifest_file}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ADAPTER_FORMAT:
        raise RagError("bad_request", f"{manifest_file} is not a {ADAPTER_FORMAT} manifest")
    gguf = target / str(manifest.get("gguf") or "adapter.gguf")
    peft = target / str(manifest.get("peft") or "peft")
    return AdapterSource(
        path,
        gguf=str(gguf) if gguf.is_file() else None,
        peft=str(peft) if (peft / "adapter_config.json").is_file() else None,
        manifest=manifest,
    )


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - the cache key
    return file_sha256(Path(path))


def served_sha256(path: Path) -> str:
    """sha256 of the served model file, computed once per process per file version."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def check_base(source: AdapterSource, served: Collection[str], served_file: Path | None) -> None:
    """Refuse an adapter whose manifest names another base than the one served (`served`: the
    names the generator's model goes by, e.g. its catalog and display names), or, for an
    embedded model given as a GGUF path, whose base file has another sha256."""
    wanted = source.base_model
    if wanted is None or wanted in served:
        return
    wanted_sha = source.manifest.get("base_sha256")
    if served_file is not None and wanted_sha and served_sha256(served_file) == wanted_sha:
        return
    raise RagError(
        "adapter_base_mismatch",
        f"adapter {source.path} was trained for {wanted!r}, but this generator serves "
        f"{' / '.join(sorted(served))!r}; serve {wanted!r} "
        f"(RAG_GENERATION__LLAMACPP__MODEL={wanted}) or train an adapter for this model",
    )


def _check_served(source: AdapterSource, generator: Generator) -> None:
    check_base(source, generator.base_names, generator.base_file)


def record_eval(folder: Path, key: str, report: dict[str, Any]) -> None:
    """Store a benchmark report's summary in an adapter folder's manifest under eval[key], so
    GET /v1/adapters shows the scores next to how the adapter was made."""
    manifest_file = folder / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest.setdefault("eval", {})[key] = {
        "model": report.get("model"),
        "questions": len({q["id"] for q in report.get("questions", [])}),
        "retrieval_recall_at_k": report.get("retrieval_recall_at_k"),
        "modes": report.get("summary", []),
        "finished_at": report.get("finished_at"),
    }
    tmp = manifest_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_file)


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter as GET /v1/adapters and `rag adapters list` show it."""

    name: str
    base_model: str
    path: str | None
    # registered (database), bundled (an adapters_dir folder) or generator (loaded there by
    # other means, e.g. vLLM's --lora-modules).
    source: str
    loaded: bool
    manifest: dict[str, Any] = field(default_factory=dict)


def discover(folder: Path) -> dict[str, AdapterSource]:
    """Adapter folders directly under `folder`, by folder name; unreadable ones are skipped
    with a log line."""
    found: dict[str, AdapterSource] = {}
    if not folder.is_dir():
        return found
    for child in sorted(folder.iterdir()):
        if not (child / MANIFEST).is_file():
            continue
        try:
            found[child.name] = read_source(str(child))
        except RagError as exc:
            log.warning("skipping adapter folder %s: %s", child, exc.message)
    return found


def registered_rows(db: Database) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, base_model, path, manifest) of every registration."""
    with db.session() as session:
        return [
            (r.name, r.base_model, r.path, dict(r.manifest or {}))
            for r in repository.list_adapters(session)
        ]


def merge_listing(
    rows: list[tuple[str, str, str, dict[str, Any]]],
    bundled: dict[str, AdapterSource],
    base_names: Collection[str],
    base_model: str,
    served: dict[str, Adapter],
) -> list[AdapterInfo]:
    """What GET /v1/adapters and `rag adapters list` show, by name: registrations (`rows`),
    the bundled folders whose manifest fits the served base (`base_names`), and what the
    generator serves besides (`served`, empty where no generator is running)."""
    shown: dict[str, AdapterInfo] = {}
    for name, source in bundled.items():
        if source.base_model is None or source.base_model in base_names:
            base = source.base_model or base_model
            shown[name] = AdapterInfo(
                name, base, source.path, "bundled", name in served, source.manifest
            )
    for name, base, path, manifest in rows:
        shown[name] = AdapterInfo(name, base, path, "registered", name in served, manifest)
    for name, adapter in served.items():
        if name not in shown:
            shown[name] = AdapterInfo(name, adapter.base_model, None, "generator", True)
    return [shown[name] for name in sorted(shown)]


def _identity(name: str, source: AdapterSource) -> str:
    return f"{name}|{source.path}|{source.manifest.get('created', '')}"


class AdapterRegistry:
    def __init__(self, db: Database, generator: Generator, adapters_dir: Path | None) -> None:
        self._db = db
        self._generator = generator
        self._bundled = discover(adapters_dir) if adapters_dir is not None else {}
        self._lock = asyncio.Lock()
        # What each adapter loaded through the registry is (path and manifest date): part of
        # the query-cache key, so an adapter registered again under its name never serves the
        # old one's cached answers.
        self._identity: dict[str, str] = {}

    @property
    def _local(self) -> bool:
        return self._generator.adapter_format == "gguf"

    async def register(self, name: str, path: str) -> AdapterInfo:
        """Check, load into the generator, then store: a registration that cannot load is
        refused with the reason and leaves nothing behind."""
        source = await asyncio.to_thread(read_source, path, must_exist=self._local)
        await asyncio.to_thread(_check_served, source, self._generator)
        async with self._lock:
            adapter = await self._generator.register_adapter(
                name, source.file_for(self._generator.adapter_format)
            )
            base = source.base_model or adapter.base_model
            await asyncio.to_thread(self._store, name, base, path, source.manifest)
            self._identity[name] = _identity(name, source)
        return AdapterInfo(name, base, path, "registered", True, source.manifest)

    def _store(self, name: str, base: str, path: str, manifest: dict[str, Any]) -> None:
        with self._db.session() as session:
            repository.put_adapter(session, name, base, path, manifest)

    async def ensure(self, name: str) -> str:
        """Make `name` usable by the generator: loaded already, or loaded now from its
        registration or bundled folder; returns what it is, for the query-cache key. Raises
        AdapterNotFound (with what exists) or the reason it cannot load."""
        if name in await self._served():
            return self._identity.get(name, name)
        async with self._lock:
            if name in await self._served():
                return self._identity.get(name, name)
            row = await asyncio.to_thread(self._row, name)
            if row is not None:
                source = await asyncio.to_thread(read_source, row[1], must_exist=self._local)
            elif name in self._bundled:
                source = self._bundled[name]
            else:
                raise AdapterNotFound(name, [a.name for a in await self.listing()])
            await asyncio.to_thread(_check_served, source, self._generator)
            await self._generator.register_adapter(
                name, source.file_for(self._generator.adapter_format)
            )
            self._identity[name] = _identity(name, source)
            return self._identity[name]

    def _row(self, name: str) -> tuple[str, str] | None:
        with self._db.session() as session:
            row = repository.find_adapter(session, name)
            return (row.base_model, row.path) if row is not None else None

    async def _served(self) -> dict[str, Adapter]:
        return {a.name: a for a in await self._generator.adapters()}

    async def listing(self) -> list[AdapterInfo]:
        """Registered adapters, bundled ones for the served base, and whatever else the
        generator serves, by name."""
        served = await self._served()
        rows = await asyncio.to_thread(self._rows)
        return merge_listing(
            rows, self._bundled, self._generator.base_names, self._generator.model, served
        )

    def _rows(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        return registered_rows(self._db)
