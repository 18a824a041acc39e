"""The run store in a database: runs (state, queue, lease, stop request, progress), metrics, batches.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=True),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("queued_at", sa.Float, nullable=True),
        sa.Column("heartbeat", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.String(80), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("stop_requested_at", sa.Float, nullable=True),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("damaged", sa.Text, nullable=False, server_default=""),
        sa.Column("status_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metrics_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("batches_version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_runs_state_queued_at", "runs", ["state", "queued_at"])
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("loss", sa.Float), sa.Column("accuracy", sa.Float),
        sa.Column("val_loss", sa.Float), sa.Column("val_accuracy", sa.Float),
        sa.Column("learning_rate", sa.Float), sa.Column("epoch_seconds", sa.Float),
        sa.Column("images_per_second", sa.Float),
    )
    op.create_table(
        "batches",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("batch", sa.Integer, primary_key=True),
        sa.Column("loss", sa.Float), sa.Column("accuracy", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("batches")
    op.drop_table("metrics")
    op.drop_index("ix_runs_state_queued_at", table_name="runs")
    op.drop_table("runs")
