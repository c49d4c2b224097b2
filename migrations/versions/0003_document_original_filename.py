"""documents: original_filename (the full uploaded name when the stored one was shortened);
media_type widened to 128 (office media types are up to 73 characters)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('original_filename', sa.Text(), nullable=True))
        batch_op.alter_column(
            'media_type', existing_type=sa.String(length=64), type_=sa.String(length=128)
        )


def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.alter_column(
            'media_type', existing_type=sa.String(length=128), type_=sa.String(length=64)
        )
        batch_op.drop_column('original_filename')
