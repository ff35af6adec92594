"""Every table and the database plumbing; no business logic lives here."""

from storage.database import DATABASE_UNAVAILABLE, Database, database_url_for
from storage.files import FileBatchRow, FileRow, VectorStoreFileRow, VectorStoreRow
from storage.models import (
    AssistantRow,
    MessageRow,
    RunEventRow,
    RunRow,
    RunStepRow,
    ThreadRow,
)
from storage.retrieval import ChunkRow, create_retrieval_schema
from storage.slack import (
    AssistantChoiceRow,
    ConversationClaimRow,
    ProcessedEventRow,
    QueuedMessageRow,
    ReminderRow,
    SlackThreadRow,
)

__all__ = [
    "DATABASE_UNAVAILABLE",
    "AssistantChoiceRow",
    "AssistantRow",
    "ChunkRow",
    "ConversationClaimRow",
    "Database",
    "FileBatchRow",
    "FileRow",
    "MessageRow",
    "ProcessedEventRow",
    "QueuedMessageRow",
    "ReminderRow",
    "RunEventRow",
    "RunRow",
    "RunStepRow",
    "SlackThreadRow",
    "ThreadRow",
    "VectorStoreFileRow",
    "VectorStoreRow",
    "create_retrieval_schema",
    "database_url_for",
]
