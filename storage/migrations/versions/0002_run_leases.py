"""Run and file-indexing leases, the run event log and conversation claims (replicas).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float(), nullable=True))
        batch.create_index("ix_run_lease_expires_at", ["lease_expires_at"], unique=False)
    with op.batch_alter_table("vector_store_file") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float(), nullable=True))
    op.create_table(
        "run_event",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("run_id", "position"),
    )
    op.create_index("ix_run_event_created_at", "run_event", ["created_at"], unique=False)
    op.create_table(
        "slack_conversation_claim",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("team_id", "channel_id", "thread_ts"),
    )
    op.create_index(
        "ix_slack_conversation_claim_expires_at",
        "slack_conversation_claim",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_slack_conversation_claim_expires_at", table_name="slack_conversation_claim")
    op.drop_table("slack_conversation_claim")
    op.drop_index("ix_run_event_created_at", table_name="run_event")
    op.drop_table("run_event")
    with op.batch_alter_table("vector_store_file") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("worker_id")
    with op.batch_alter_table("run") as batch:
        batch.drop_index("ix_run_lease_expires_at")
        batch.drop_column("lease_expires_at")
        batch.drop_column("worker_id")
