"""Certificate identity of tokens (issuer + serial, unique) and shared rate-limit counters.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """token.certificate_id with a unique index, and the rate_limit table."""
    with op.batch_alter_table("token") as batch:
        batch.add_column(sa.Column("certificate_id", sa.String(length=160), nullable=True))
        batch.create_index("ix_token_certificate_id", ["certificate_id"], unique=True)
    op.create_table(
        "rate_limit",
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window", name=op.f("pk_rate_limit")),
    )


def downgrade() -> None:
    """Drop both."""
    op.drop_table("rate_limit")
    with op.batch_alter_table("token") as batch:
        batch.drop_index("ix_token_certificate_id")
        batch.drop_column("certificate_id")
