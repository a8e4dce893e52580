"""privacyIDEA 3.14: SMTP ``tls`` means STARTTLS, handler ``abort_on_error``, audit columns.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Stored ``tls`` meant implicit TLS: it becomes ``implicit_tls``; the new columns."""
    with op.batch_alter_table("smtpserver") as batch:
        batch.alter_column("tls", new_column_name="implicit_tls", existing_type=sa.Boolean())
    with op.batch_alter_table("eventhandler") as batch:
        batch.add_column(
            sa.Column("abort_on_error", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("duration", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("user_agent", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("server", sa.String(length=255), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Back to ``tls`` meaning implicit TLS; drop the new columns."""
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("server")
        batch.drop_column("user_agent")
        batch.drop_column("duration")
    with op.batch_alter_table("eventhandler") as batch:
        batch.drop_column("abort_on_error")
    with op.batch_alter_table("smtpserver") as batch:
        batch.alter_column("implicit_tls", new_column_name="tls", existing_type=sa.Boolean())
