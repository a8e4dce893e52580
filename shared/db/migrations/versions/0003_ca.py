"""CA requests, templates, revocation.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Templates, CA requests, CRL/OCSP publications; sealed secrets of connectors."""
    with op.batch_alter_table("caconnector") as batch:
        batch.add_column(sa.Column("secrets", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "ca_template",
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca"], ["caconnector.name"], name="fk_ca_template_ca_caconnector"
        ),
        sa.PrimaryKeyConstraint("ca", "name", name="pk_ca_template"),
    )
    op.create_table(
        "ca_request",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("token_serial", sa.String(length=40), nullable=False),
        sa.Column("template", sa.String(length=120), nullable=False),
        sa.Column("csr", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("realm", sa.String(length=120), nullable=False),
        sa.Column("requester", sa.String(length=255), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ca_request"),
        sa.UniqueConstraint("token_serial", name="uq_ca_request_token_serial"),
    )
    op.create_index("ix_ca_request_ca_status", "ca_request", ["ca", "status"], unique=False)
    op.create_table(
        "ca_publication",
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=False),
        sa.Column("crl", sa.LargeBinary(), nullable=False),
        sa.Column("crl_this_update", sa.DateTime(), nullable=False),
        sa.Column("crl_next_update", sa.DateTime(), nullable=False),
        sa.Column("ocsp_cert", sa.Text(), nullable=False),
        sa.Column("ocsp_key", sa.Text(), nullable=False),
        sa.Column("ocsp_not_after", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca"], ["caconnector.name"], name="fk_ca_publication_ca_caconnector"
        ),
        sa.PrimaryKeyConstraint("ca", name="pk_ca_publication"),
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_table("ca_publication")
    op.drop_index("ix_ca_request_ca_status", table_name="ca_request")
    op.drop_table("ca_request")
    op.drop_table("ca_template")
    with op.batch_alter_table("caconnector") as batch:
        batch.drop_column("secrets")
