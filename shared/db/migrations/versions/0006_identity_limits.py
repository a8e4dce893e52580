"""Certificate identity of tokens (issuer + serial, unique) and shared rate-limit counters.

Revision ID: 0006
Revises: 0005
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography import x509

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
    _backfill_certificate_ids()
    op.create_table(
        "rate_limit",
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window", name=op.f("pk_rate_limit")),
    )


def _backfill_certificate_ids() -> None:
    """Existing tokens' certificate ids; the oldest token keeps a certificate held twice."""
    token = sa.table(
        "token",
        sa.column("serial", sa.String),
        sa.column("certificate", sa.Text),
        sa.column("certificate_id", sa.String),
        sa.column("created_at", sa.DateTime),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(token.c.serial, token.c.certificate)
        .where(token.c.certificate != "")
        .order_by(token.c.created_at, token.c.serial)
    )
    seen: set[str] = set()
    for serial, pem in rows.all():
        identity = _certificate_id(pem)
        if identity is None or identity in seen:
            continue
        seen.add(identity)
        bind.execute(token.update().where(token.c.serial == serial).values(certificate_id=identity))


def _certificate_id(pem: str) -> str | None:
    """shared.pki.certificate_id as of this revision; None for what does not parse."""
    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode())
        issuer = hashlib.sha256(cert.issuer.public_bytes()).hexdigest()
        return f"{issuer}:{cert.serial_number:x}"
    except (ValueError, x509.InvalidVersion):
        return None


def downgrade() -> None:
    """Drop both."""
    op.drop_table("rate_limit")
    with op.batch_alter_table("token") as batch:
        batch.drop_index("ix_token_certificate_id")
        batch.drop_column("certificate_id")
