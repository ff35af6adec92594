"""One JSON object per log line, with the run and Slack context when a record carries it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["configure_logging"]

_CONTEXT = ("run_id", "thread_id", "team_id", "channel", "thread_ts", "event_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx/openai log every request line at INFO, APScheduler every run of the maintenance
    # jobs (several a second); keep them for debugging only.
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access", "apscheduler.executors"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
