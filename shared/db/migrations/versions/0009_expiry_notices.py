"""Expiry notices sent, once per certificate and threshold.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The expiry_notice table."""
    op.create_table(
        "expiry_notice",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("certificate", sa.String(length=160), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expiry_notice")),
        sa.UniqueConstraint(
            "kind", "subject", "certificate", "threshold_days", name="uq_expiry_notice_once"
        ),
    )
    op.create_index("ix_expiry_notice_not_after", "expiry_notice", ["not_after"])


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_expiry_notice_not_after", table_name="expiry_notice")
    op.drop_table("expiry_notice")
