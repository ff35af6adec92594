"""Prometheus metrics of the Slack side (served at `/metrics` with the process metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ANSWERS", "ANSWER_SECONDS", "EVENTS", "FEEDBACK", "RUNS_ACTIVE"]

EVENTS = Counter(
    "slack_assistants_events_total", "Slack events taken, by outcome", ["outcome"]
)  # outcome: queued | duplicate | ignored
ANSWERS = Counter("slack_assistants_answers_total", "Answers written, by run status", ["status"])
ANSWER_SECONDS = Histogram(
    "slack_assistants_answer_seconds",
    "From taking a message off the queue to the end of its answer",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
FEEDBACK = Counter("slack_assistants_feedback_total", "Answer feedback by value", ["value"])
#: Set to read the engine's runner when the bot starts.
RUNS_ACTIVE = Gauge("slack_assistants_runs_active", "Runs this process is executing now")
