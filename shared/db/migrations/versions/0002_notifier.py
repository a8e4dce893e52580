"""Event handlers, SMTP servers, mail deliveries.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Event handlers, SMTP servers, the notifier's delivery records; admins' e-mail."""
    with op.batch_alter_table("admin") as batch:
        batch.add_column(
            sa.Column("email", sa.String(length=255), nullable=False, server_default="")
        )
    op.create_table(
        "eventhandler",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("handlermodule", sa.String(length=60), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("position", sa.String(length=10), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("ordering", sa.Integer(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_eventhandler"),
    )
    op.create_table(
        "smtpserver",
        sa.Column("identifier", sa.String(length=120), nullable=False),
        sa.Column("server", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("starttls", sa.Boolean(), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("timeout", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name="pk_smtpserver"),
    )
    op.create_table(
        "mail_delivery",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("handler_id", sa.Integer(), nullable=False),
        sa.Column("handler_name", sa.String(length=120), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("smtpserver", sa.String(length=120), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("claim", sa.String(length=40), nullable=False),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mail_delivery"),
        sa.UniqueConstraint("event_id", "handler_id", "recipient", name="uq_mail_delivery_once"),
    )
    op.create_index("ix_mail_delivery_status", "mail_delivery", ["status"], unique=False)
    op.create_index("ix_mail_delivery_serial", "mail_delivery", ["serial"], unique=False)


def downgrade() -> None:
    """Drop what upgrade() made."""
    op.drop_index("ix_mail_delivery_serial", table_name="mail_delivery")
    op.drop_index("ix_mail_delivery_status", table_name="mail_delivery")
    op.drop_table("mail_delivery")
    op.drop_table("smtpserver")
    op.drop_table("eventhandler")
    with op.batch_alter_table("admin") as batch:
        batch.drop_column("email")
