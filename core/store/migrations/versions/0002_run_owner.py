"""Who started each run: a hash of the browser key of the person who owns it (NULL: nobody in
particular, as for runs from the command line and runs imported from folders).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_runs_state_owner", "runs", ["state", "owner"])


def downgrade() -> None:
    op.drop_index("ix_runs_state_owner", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner")
