"""Every table and the database plumbing; no business logic lives here."""

from storage.database import Database, database_url_for
from storage.models import (
    AssistantRow,
    MessageRow,
    RunRow,
    RunStepRow,
    ThreadRow,
)

__all__ = [
    "AssistantRow",
    "Database",
    "MessageRow",
    "RunRow",
    "RunStepRow",
    "ThreadRow",
    "database_url_for",
]
