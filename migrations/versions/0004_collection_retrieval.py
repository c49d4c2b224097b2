"""collection retrieval mode

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the collection follows the server default (settings.retrieval.default).
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retrieval', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_column('retrieval')
