"""Initial schema: admins, users, CA connectors, tokens, issued certificates, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 03:26:12.798172
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "admin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin"),
        sa.UniqueConstraint("name", name="uq_admin_name"),
    )
    op.create_table(
        "caconnector",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("cacert", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_caconnector"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=120), nullable=False),
        sa.Column("routing_key", sa.String(length=120), nullable=False),
        sa.Column("message_type", sa.String(length=120), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_claim", "outbox", ["claimed_until"], unique=False)

    op.create_table(
        "token",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("tokentype", sa.String(length=30), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("realm", sa.String(length=120), nullable=False),
        sa.Column("rollout_state", sa.String(length=20), nullable=False),
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("template", sa.String(length=120), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_token"),
    )
    op.create_index("ix_token_owner", "token", ["realm", "username"], unique=False)
    op.create_index("ix_token_rollout_state", "token", ["rollout_state"], unique=False)

    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm", sa.String(length=120), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("givenname", sa.String(length=120), nullable=False),
        sa.Column("surname", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_user"),
        sa.UniqueConstraint("realm", "username", name="uq_user_realm_username"),
    )
    op.create_index("ix_user_realm", "user", ["realm"], unique=False)

    op.create_table(
        "issued_certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("token_serial", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca"], ["caconnector.name"], name="fk_issued_certificate_ca_caconnector"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_issued_certificate"),
        sa.UniqueConstraint("ca", "serial_number", name="uq_issued_ca_serial"),
        sa.UniqueConstraint("token_serial", name="uq_issued_certificate_token_serial"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("issued_certificate")
    op.drop_index("ix_user_realm", table_name="user")
    op.drop_table("user")
    op.drop_index("ix_token_rollout_state", table_name="token")
    op.drop_index("ix_token_owner", table_name="token")
    op.drop_table("token")
    op.drop_index("ix_outbox_claim", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("caconnector")
    op.drop_table("admin")
