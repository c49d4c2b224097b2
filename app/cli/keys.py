"""`rag keys`: create, list and revoke API keys. An operator command that, like `rag migrate`,
talks to the database directly (core/), not to a running service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from core.models import ApiKeyRole

if TYPE_CHECKING:
    from core.db import Database

keys = typer.Typer(help="Create, list and revoke API keys (stored hashed in the database).")


def open_database() -> Database:
    """The configured database, migrated first when auto_migrate is on (also rag adapters)."""
    from core.db import Database
    from core.migrate import upgrade
    from core.settings import get_settings

    settings = get_settings()
    if settings.database.auto_migrate:
        upgrade(settings)  # the embedded default may not have created its database yet
    return Database(settings)


@keys.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin (everything) or query (read-only).")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from core import api_keys

    if role not in ApiKeyRole.ALL:
        typer.echo(f"--role must be one of: {', '.join(ApiKeyRole.ALL)}", err=True)
        raise typer.Exit(2)
    db = open_database()
    try:
        with db.session() as session:
            row, key = api_keys.create_api_key(session, role, name)
            key_id = row.id
    finally:
        db.dispose()
    typer.echo(f"created {role} key {key_id}; store it now, it is not shown again:", err=True)
    typer.echo(key)


@keys.command("list")
def list_keys() -> None:
    """Every key's id, role, name and state (never the key itself)."""
    from core import api_keys

    db = open_database()
    try:
        with db.session() as session:
            rows = [
                (r.id, r.role, r.name, r.created_at, r.revoked_at)
                for r in api_keys.list_api_keys(session)
            ]
    finally:
        db.dispose()
    if not rows:
        typer.echo("no API keys (every route is open; serving is allowed on 127.0.0.1 only)")
    for key_id, role, name, created, revoked in rows:
        state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
        typer.echo(f"{key_id}  {role:<5}  {state:<24}  created {created:%Y-%m-%d %H:%M}  {name}")


@keys.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key by id; running services stop accepting it within RAG_AUTH__CACHE_TTL_S."""
    from core import api_keys
    from core.errors import RagError

    db = open_database()
    try:
        with db.session() as session:
            api_keys.revoke_api_key(session, key_id)
    except RagError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    typer.echo(f"revoked {key_id}")
