"""Engine tables: assistants, threads, messages, runs and run steps.

Every table has an integer `seq` primary key that only grows, so list order and `after`/`before`
cursors are exact even when two rows share a `created_at` second; the public `id` is unique.
JSON columns hold the wire-shaped parts (tools, content, step details) as the API returns them.
Files, vector stores and the bot's tables get their own modules beside this one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["AssistantRow", "MessageRow", "RunEventRow", "RunRow", "RunStepRow", "ThreadRow"]


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSON, nullable=nullable)


class AssistantRow(SQLModel, table=True):
    __tablename__ = "assistant"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    created_at: int
    model: str
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    tool_resources: dict[str, Any] | None = _json()
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = _json()


class ThreadRow(SQLModel, table=True):
    __tablename__ = "thread"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    created_at: int
    tool_resources: dict[str, Any] | None = _json()
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))


class MessageRow(SQLModel, table=True):
    __tablename__ = "message"
    # A thread's messages in order, either way: lists, and the prompt's newest-first read
    # (PostgreSQL otherwise sorts the whole thread, or walks the primary key past other threads).
    __table_args__ = (Index("ix_message_thread_id_seq", "thread_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    thread_id: str = Field(max_length=64)
    created_at: int
    role: str
    status: str = "completed"
    content: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    attachments: list[dict[str, Any]] | None = _json()
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    assistant_id: str | None = None
    run_id: str | None = Field(default=None, index=True, max_length=64)
    completed_at: int | None = None
    incomplete_at: int | None = None
    incomplete_details: dict[str, Any] | None = _json()


class RunRow(SQLModel, table=True):
    __tablename__ = "run"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    thread_id: str = Field(index=True, max_length=64)
    assistant_id: str
    created_at: int
    status: str = Field(index=True)
    model: str
    instructions: str = ""
    tools: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = _json()
    tool_choice: Any = _json()
    parallel_tool_calls: bool = True
    response_format: Any = _json()
    required_action: dict[str, Any] | None = _json()
    last_error: dict[str, Any] | None = _json()
    incomplete_details: dict[str, Any] | None = _json()
    usage: dict[str, int] | None = _json()
    started_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    #: The process executing the run; it renews `lease_expires_at` (Unix seconds) while the
    #: run's task lives. A lease left to lapse means that process stopped: another takes over.
    worker_id: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = Field(default=None, index=True)


class RunStepRow(SQLModel, table=True):
    __tablename__ = "run_step"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, index=True, max_length=64)
    run_id: str = Field(index=True, max_length=64)
    thread_id: str = Field(index=True, max_length=64)
    assistant_id: str
    created_at: int
    type: str
    status: str
    step_details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    meta: dict[str, str] | None = _json()
    last_error: dict[str, Any] | None = _json()
    usage: dict[str, int] | None = _json()
    expired_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None


class RunEventRow(SQLModel, table=True):
    """A run's stream events, so a reader in another process follows a run in order.

    `position` numbers a run's events from 0 as its stream shows them; rows go once the run
    has ended and its readers had time to catch up.
    """

    __tablename__ = "run_event"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    seq: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    position: int
    event: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: int = Field(index=True)
