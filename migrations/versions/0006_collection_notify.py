"""notify listeners when a collection changes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:40:00

API processes cache collection states (id, index version, active embedder, retrieval mode) and
LISTEN on this channel to drop them the moment a change commits (core/collection_state.py).
Postgres only: an SQLite process checks `PRAGMA data_version` instead.
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = 'rag_collections'


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION rag_notify_collection() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', COALESCE(NEW.name, OLD.name));
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER collections_notify
        AFTER INSERT OR UPDATE OR DELETE ON collections
        FOR EACH ROW EXECUTE FUNCTION rag_notify_collection()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP TRIGGER IF EXISTS collections_notify ON collections')
    op.execute('DROP FUNCTION IF EXISTS rag_notify_collection()')
