"""Bot tables: Slack thread links, assistant choices, processed events, the message queue,
reminders.

Uniqueness lives in the schema, not in process memory, so a retried event, a mention that also
arrives as a message, or a second replica can never make the bot answer twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "AssistantChoiceRow",
    "ConversationClaimRow",
    "ProcessedEventRow",
    "QueuedMessageRow",
    "ReminderRow",
    "SlackThreadRow",
]


class SlackThreadRow(SQLModel, table=True):
    """A Slack conversation (team, channel, thread) and the engine thread behind it."""

    __tablename__ = "slack_thread"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    seq: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    #: The Slack thread's root ts; "" for a DM's main conversation (top-level messages).
    thread_ts: str = Field(max_length=32)
    engine_thread_id: str = Field(index=True, max_length=64)
    assistant_name: str
    created_at: int


class AssistantChoiceRow(SQLModel, table=True):
    """The assistant chosen with `/assistant use` for a channel or a DM."""

    __tablename__ = "slack_assistant_choice"
    __table_args__ = (UniqueConstraint("team_id", "channel_id"),)

    seq: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    assistant_name: str
    chosen_by: str | None = None
    updated_at: int


class ProcessedEventRow(SQLModel, table=True):
    """Slack event ids already taken (retries reuse the id); purged after a day."""

    __tablename__ = "slack_processed_event"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: int = Field(index=True)


class QueuedMessageRow(SQLModel, table=True):
    """A user message waiting for (or getting) its answer, in arrival order per thread."""

    __tablename__ = "slack_queued_message"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "message_ts"),)

    seq: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    #: Where the reply goes: the Slack thread the user sees the answer in.
    reply_thread_ts: str = Field(max_length=32)
    message_ts: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    text: str
    files: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    status: str = Field(default="pending", index=True)  # pending | done | failed
    created_at: int


class ConversationClaimRow(SQLModel, table=True):
    """Which process answers a Slack conversation's queue; one at a time, across replicas.

    The owner renews `expires_at` (Unix seconds) while its worker lives; a lapsed claim is
    taken by any process, which then answers what is still pending.
    """

    __tablename__ = "slack_conversation_claim"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    seq: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    worker_id: str = Field(max_length=64)
    expires_at: float = Field(index=True)


class ReminderRow(SQLModel, table=True):
    """A reminder the model scheduled; delivered at `due_at` even across restarts."""

    __tablename__ = "slack_reminder"

    id: str = Field(primary_key=True, max_length=64)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    user_id: str | None = Field(default=None, max_length=32)
    text: str
    due_at: int = Field(index=True)
    status: str = Field(default="scheduled", index=True)  # scheduled | sent | failed
    created_at: int
