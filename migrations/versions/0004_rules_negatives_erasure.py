"""negative event types (dislike, hide), merchandising rules, erasure receipts, exposures by user

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TYPES = ("view", "click", "add_to_cart", "purchase", "rating")
NEW_TYPES = (*OLD_TYPES, "dislike", "hide")


def _type_check(types: tuple[str, ...]) -> str:
    """The events.type check constraint's condition."""
    return "type IN (" + ", ".join(f"'{kind}'" for kind in types) + ")"


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("ck_events_type", type_="check")
        batch_op.create_check_constraint("ck_events_type", _type_check(NEW_TYPES))
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.create_index("ix_exposures_user", ["user_id"], unique=False)
    op.create_table(
        "rules",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column(
            "erased_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasures_subject", "erasures", ["subject"], unique=False)


def downgrade() -> None:
    """Revert this revision (events of the new types must be deleted first)."""
    op.drop_index("ix_erasures_subject", table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("rules")
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.drop_index("ix_exposures_user")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("ck_events_type", type_="check")
        batch_op.create_check_constraint("ck_events_type", _type_check(OLD_TYPES))
