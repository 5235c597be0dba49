"""item embeddings: the catalog's content vectors by encoder and content hash

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "item_embeddings",
        sa.Column("encoder", sa.String(length=128), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("encoder", "content_hash"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("item_embeddings")
