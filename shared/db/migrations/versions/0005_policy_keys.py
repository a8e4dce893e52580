"""Policies and server-generated keys.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The policy table and the sealed keys of genkey tokens."""
    op.create_table(
        "policy",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("realm", sa.JSON(), nullable=False),
        sa.Column("user", sa.JSON(), nullable=False),
        sa.Column("adminrealm", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_policy")),
    )
    op.create_index(op.f("ix_policy_scope"), "policy", ["scope"], unique=False)
    op.create_table(
        "token_key",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("keytype", sa.String(length=20), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("pkcs12", sa.Text(), nullable=False),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_token_key")),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("token_key")
    op.drop_index(op.f("ix_policy_scope"), table_name="policy")
    op.drop_table("policy")
