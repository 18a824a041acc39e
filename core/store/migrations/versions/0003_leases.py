"""Named leases: who does a piece of shared work now, across processes and servers (a sweep's
driver step, so that two dashboards on one database never ask for the same trial twice). A row
names the work, its holder and when the lease expires on the database's clock; a holder that
died is taken over once its lease has expired.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
