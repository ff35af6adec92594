"""Baseline: the schema of the release before migrations, as its `create_all` made it.

A database that release created has these tables but no `alembic_version`; `Database.upgrade`
stamps it with this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "assistant",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("instructions", sa.String(), nullable=True),
        sa.Column("tools", sa.JSON(), nullable=True),
        sa.Column("tool_resources", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("top_p", sa.Float(), nullable=True),
        sa.Column("response_format", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_assistant_id", "assistant", ["id"], unique=True)
    op.create_table(
        "chunk",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("embedding_dims", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("vector_store_id", "file_id", "chunk_index"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chunk_file_id", "chunk", ["file_id"], unique=False)
    op.create_table(
        "file",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("mimetype", sa.String(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_file_id", "file", ["id"], unique=True)
    op.create_index("ix_file_purpose", "file", ["purpose"], unique=False)
    op.create_index("ix_file_source", "file", ["source"], unique=False)
    op.create_table(
        "message",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("assistant_id", sa.String(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("incomplete_at", sa.Integer(), nullable=True),
        sa.Column("incomplete_details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_message_id", "message", ["id"], unique=True)
    op.create_index("ix_message_run_id", "message", ["run_id"], unique=False)
    op.create_index("ix_message_thread_id", "message", ["thread_id"], unique=False)
    op.create_table(
        "run",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("assistant_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("instructions", sa.String(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("top_p", sa.Float(), nullable=True),
        sa.Column("max_prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("max_completion_tokens", sa.Integer(), nullable=True),
        sa.Column("truncation_strategy", sa.JSON(), nullable=True),
        sa.Column("tool_choice", sa.JSON(), nullable=True),
        sa.Column("parallel_tool_calls", sa.Boolean(), nullable=False),
        sa.Column("response_format", sa.JSON(), nullable=True),
        sa.Column("required_action", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("incomplete_details", sa.JSON(), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_run_id", "run", ["id"], unique=True)
    op.create_index("ix_run_status", "run", ["status"], unique=False)
    op.create_index("ix_run_thread_id", "run", ["thread_id"], unique=False)
    op.create_table(
        "run_step",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("assistant_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("step_details", sa.JSON(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("expired_at", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_run_step_id", "run_step", ["id"], unique=True)
    op.create_index("ix_run_step_run_id", "run_step", ["run_id"], unique=False)
    op.create_index("ix_run_step_thread_id", "run_step", ["thread_id"], unique=False)
    op.create_table(
        "slack_assistant_choice",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("assistant_name", sa.String(), nullable=False),
        sa.Column("chosen_by", sa.String(), nullable=True),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("team_id", "channel_id"),
    )
    op.create_table(
        "slack_processed_event",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_slack_processed_event_received_at",
        "slack_processed_event",
        ["received_at"],
        unique=False,
    )
    op.create_table(
        "slack_queued_message",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("reply_thread_ts", sa.String(length=32), nullable=False),
        sa.Column("message_ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("team_id", "channel_id", "message_ts"),
    )
    op.create_index(
        "ix_slack_queued_message_status", "slack_queued_message", ["status"], unique=False
    )
    op.create_table(
        "slack_reminder",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("due_at", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slack_reminder_due_at", "slack_reminder", ["due_at"], unique=False)
    op.create_index("ix_slack_reminder_status", "slack_reminder", ["status"], unique=False)
    op.create_table(
        "slack_thread",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("engine_thread_id", sa.String(length=64), nullable=False),
        sa.Column("assistant_name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("team_id", "channel_id", "thread_ts"),
    )
    op.create_index(
        "ix_slack_thread_engine_thread_id", "slack_thread", ["engine_thread_id"], unique=False
    )
    op.create_table(
        "thread",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("tool_resources", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_thread_id", "thread", ["id"], unique=True)
    op.create_table(
        "vector_store",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("expires_after", sa.JSON(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("last_active_at", sa.Integer(), nullable=True),
        sa.Column("expired", sa.Boolean(), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_vector_store_id", "vector_store", ["id"], unique=True)
    op.create_index("ix_vector_store_thread_id", "vector_store", ["thread_id"], unique=False)
    op.create_table(
        "vector_store_batch",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("vector_store_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_vector_store_batch_id", "vector_store_batch", ["id"], unique=True)
    op.create_index(
        "ix_vector_store_batch_vector_store_id",
        "vector_store_batch",
        ["vector_store_id"],
        unique=False,
    )
    op.create_table(
        "vector_store_file",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("usage_bytes", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("chunking_strategy", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("vector_store_id", "file_id"),
    )
    op.create_index(
        "ix_vector_store_file_batch_id", "vector_store_file", ["batch_id"], unique=False
    )
    op.create_index("ix_vector_store_file_file_id", "vector_store_file", ["file_id"], unique=False)
    op.create_index(
        "ix_vector_store_file_vector_store_id",
        "vector_store_file",
        ["vector_store_id"],
        unique=False,
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_index("ix_vector_store_file_vector_store_id", table_name="vector_store_file")
    op.drop_index("ix_vector_store_file_file_id", table_name="vector_store_file")
    op.drop_index("ix_vector_store_file_batch_id", table_name="vector_store_file")
    op.drop_table("vector_store_file")
    op.drop_index("ix_vector_store_batch_vector_store_id", table_name="vector_store_batch")
    op.drop_index("ix_vector_store_batch_id", table_name="vector_store_batch")
    op.drop_table("vector_store_batch")
    op.drop_index("ix_vector_store_thread_id", table_name="vector_store")
    op.drop_index("ix_vector_store_id", table_name="vector_store")
    op.drop_table("vector_store")
    op.drop_index("ix_thread_id", table_name="thread")
    op.drop_table("thread")
    op.drop_index("ix_slack_thread_engine_thread_id", table_name="slack_thread")
    op.drop_table("slack_thread")
    op.drop_index("ix_slack_reminder_status", table_name="slack_reminder")
    op.drop_index("ix_slack_reminder_due_at", table_name="slack_reminder")
    op.drop_table("slack_reminder")
    op.drop_index("ix_slack_queued_message_status", table_name="slack_queued_message")
    op.drop_table("slack_queued_message")
    op.drop_index("ix_slack_processed_event_received_at", table_name="slack_processed_event")
    op.drop_table("slack_processed_event")
    op.drop_table("slack_assistant_choice")
    op.drop_index("ix_run_step_thread_id", table_name="run_step")
    op.drop_index("ix_run_step_run_id", table_name="run_step")
    op.drop_index("ix_run_step_id", table_name="run_step")
    op.drop_table("run_step")
    op.drop_index("ix_run_thread_id", table_name="run")
    op.drop_index("ix_run_status", table_name="run")
    op.drop_index("ix_run_id", table_name="run")
    op.drop_table("run")
    op.drop_index("ix_message_thread_id", table_name="message")
    op.drop_index("ix_message_run_id", table_name="message")
    op.drop_index("ix_message_id", table_name="message")
    op.drop_table("message")
    op.drop_index("ix_file_source", table_name="file")
    op.drop_index("ix_file_purpose", table_name="file")
    op.drop_index("ix_file_id", table_name="file")
    op.drop_table("file")
    op.drop_index("ix_chunk_file_id", table_name="chunk")
    op.drop_table("chunk")
    op.drop_index("ix_assistant_id", table_name="assistant")
    op.drop_table("assistant")
    # ### end Alembic commands ###
