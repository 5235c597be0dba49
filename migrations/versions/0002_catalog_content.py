"""catalog content: description, categories, price

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    # Batch mode: SQLite cannot drop columns in place (downgrade), so both directions use it.
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        # The default fills the rows already stored: no categories.
        batch_op.add_column(
            sa.Column("categories", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("price", sa.Float(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("price")
        batch_op.drop_column("categories")
        batch_op.drop_column("description")
