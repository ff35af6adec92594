"""Messages indexed by (thread_id, seq), in place of thread_id alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Serves every lookup by thread_id as well, so the one-column index goes.
    op.create_index("ix_message_thread_id_seq", "message", ["thread_id", "seq"], unique=False)
    op.drop_index("ix_message_thread_id", table_name="message")


def downgrade() -> None:
    op.create_index("ix_message_thread_id", "message", ["thread_id"], unique=False)
    op.drop_index("ix_message_thread_id_seq", table_name="message")
