"""Audit log and failed-login counters.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The audit table and the per-user failed-login counters."""
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=255), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("realm", sa.String(length=120), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("info", sa.String(length=255), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_time", "audit", ["time"], unique=False)
    op.create_index("ix_audit_serial", "audit", ["serial"], unique=False)
    op.create_index("ix_audit_owner", "audit", ["realm", "username"], unique=False)
    op.create_table(
        "login_failure",
        sa.Column("realm", sa.String(length=120), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("realm", "username", name="pk_login_failure"),
    )


def downgrade() -> None:
    """Drop the failed-login counters and the audit table."""
    op.drop_table("login_failure")
    op.drop_index("ix_audit_owner", table_name="audit")
    op.drop_index("ix_audit_serial", table_name="audit")
    op.drop_index("ix_audit_time", table_name="audit")
    op.drop_table("audit")
