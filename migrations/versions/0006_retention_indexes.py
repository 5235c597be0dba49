"""retention and retrain window: indexes on events' and exposures' times

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index("ix_events_time", "events", ["event_time"])
    op.create_index("ix_exposures_created", "exposures", ["created_at"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_exposures_created", table_name="exposures")
    op.drop_index("ix_events_time", table_name="events")
