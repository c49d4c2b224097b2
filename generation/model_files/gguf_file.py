"""Reading a GGUF file's metadata without loading the model, and the checks made before one is
served: it must be a GGUF, carry a chat template, and name an architecture.

The format (GGUF v2/v3): magic "GGUF", uint32 version, uint64 tensor count, uint64 key/value
count, then the key/value pairs. Only the pairs are read; large arrays (the vocabulary) are
skipped, so reading the header of a 1 GB model takes milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Value types of the GGUF key/value section.
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# Keys whose values are read; every other value is skipped.
_WANTED = (
    "general.architecture",
    "general.name",
    "general.file_type",
    "tokenizer.chat_template",
    "tokenizer.ggml.model",
)


class GgufError(ValueError):
    """The file is not a GGUF this service can serve; the message says why."""


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture") or "")

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or "")

    @property
    def chat_template(self) -> str:
        return str(self.metadata.get("tokenizer.chat_template") or "")

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None


def read_gguf(path: Path) -> GgufInfo:
    """The header metadata of the GGUF at `path`. Raises GgufError when it is not one."""
    try:
        with path.open("rb") as file:
            if file.read(4) != b"GGUF":
                raise GgufError(f"{path.name} is not a GGUF file (no GGUF magic number)")
            (version,) = _unpack(file, "<I")
            if version < 2:
                raise GgufError(f"{path.name} is GGUF version {version}; llama.cpp needs 2 or 3")
            tensor_count, kv_count = _unpack(file, "<QQ")
            wanted = {*_WANTED}
            metadata: dict[str, Any] = {}
            for _ in range(kv_count):
                key = _string(file)
                (kind,) = _unpack(file, "<I")
                keep = key in wanted or key.endswith(".context_length")
                value = _value(file, kind, keep)
                if keep:
                    metadata[key] = value
    except OSError as exc:
        raise GgufError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (struct.error, UnicodeDecodeError) as exc:
        raise GgufError(f"{path.name} is not a complete GGUF file (its header is cut off)") from exc
    return GgufInfo(path, version, tensor_count, metadata)


def check_servable(info: GgufInfo) -> None:
    """Refuse a GGUF the pipeline cannot use: no architecture, or no chat template (a base
    model: the steps are chat messages, and without the model's template they are noise)."""
    if not info.architecture:
        raise GgufError(f"{info.path.name} names no architecture (general.architecture)")
    if not info.chat_template:
        raise GgufError(
            f"{info.path.name} ({info.architecture}) has no chat template "
            "(tokenizer.chat_template): it is a base model or was converted without one; "
            "serve an instruction-tuned model with a chat template"
        )


def _unpack(file: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = file.read(size)
    if len(data) != size:
        raise struct.error("unexpected end of file")
    return struct.unpack(fmt, data)


def _string(file: BinaryIO) -> str:
    (length,) = _unpack(file, "<Q")
    data = file.read(length)
    if len(data) != length:
        raise struct.error("unexpected end of file")
    return data.decode("utf-8")


def _value(file: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        return _unpack(file, _SCALARS[kind])[0]
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item_kind, count = _unpack(file, "<IQ")
        if item_kind in _SCALARS and not keep:
            file.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
            return None
        items = [_value(file, item_kind, keep) for _ in range(count)]
        return items if keep else None
    raise struct.error(f"unknown GGUF value type {kind}")
