"""LoRA adapters: register (or replace), look up, list, remove."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import LoraAdapter


def put_adapter(
    session: Session, name: str, base_model: str, path: str, manifest: dict[str, Any]
) -> LoraAdapter:
    """Register an adapter under `name`, replacing an earlier registration of that name."""
    row = session.get(LoraAdapter, name)
    if row is None:
        row = LoraAdapter(name=name, base_model=base_model, path=path, manifest=manifest)
        session.add(row)
    else:
        row.base_model, row.path, row.manifest = base_model, path, manifest
    session.flush()
    return row


def find_adapter(session: Session, name: str) -> LoraAdapter | None:
    return session.get(LoraAdapter, name)


def list_adapters(session: Session) -> Sequence[LoraAdapter]:
    return session.scalars(select(LoraAdapter).order_by(LoraAdapter.name)).all()


def delete_adapter(session: Session, name: str) -> None:
    row = session.get(LoraAdapter, name)
    if row is None:
        raise RagError("adapter_not_found", f"no registered adapter {name!r}")
    session.delete(row)
