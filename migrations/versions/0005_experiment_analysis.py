"""experiment analysis: experiments' start and guardrail, exposures' latency and fallback

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("guardrail", sa.JSON(), nullable=True))
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("latency_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("fallback", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.drop_column("fallback")
        batch_op.drop_column("latency_ms")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("guardrail")
        batch_op.drop_column("started_at")
