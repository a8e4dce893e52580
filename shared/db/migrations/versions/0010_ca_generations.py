"""CA generations: the keys and certificates a rollover replaced, and who issued what.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The ca_generation table; the issuer key of issued certificates; the publication's."""
    op.create_table(
        "ca_generation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ca", sa.String(length=120), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("cacert", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=False),
        sa.Column("crl", sa.LargeBinary(), nullable=True),
        sa.Column("crl_this_update", sa.DateTime(), nullable=True),
        sa.Column("crl_next_update", sa.DateTime(), nullable=True),
        sa.Column("ocsp_cert", sa.Text(), nullable=False),
        sa.Column("ocsp_key", sa.Text(), nullable=False),
        sa.Column("ocsp_not_after", sa.DateTime(), nullable=True),
        sa.Column("superseded_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ca"], ["caconnector.name"], name="fk_ca_generation_ca_caconnector"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ca_generation"),
        sa.UniqueConstraint("ca", "generation", name="uq_ca_generation"),
    )
    with op.batch_alter_table("issued_certificate") as batch:
        batch.add_column(sa.Column("issuer_key_id", sa.String(length=128), nullable=True))
        batch.create_index("ix_issued_ca_key_id", ["ca", "issuer_key_id"])
    with op.batch_alter_table("ca_publication") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("ca_publication") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("issued_certificate") as batch:
        batch.drop_index("ix_issued_ca_key_id")
        batch.drop_column("issuer_key_id")
    op.drop_table("ca_generation")
