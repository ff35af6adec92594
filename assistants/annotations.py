"""Annotations of an answer: citation markers the run issued -> `file_citation`, sandbox links
to files the run wrote -> `file_path`. Markers the engine did not issue stay plain text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["annotate"]

_SANDBOX_LINK = re.compile(r"sandbox:(/mnt/data/[^\s)\]\"'<>]+)")


def annotate(text: str, calls: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Annotations for `text`, ordered by position, from the run's built-in tool calls."""
    markers: dict[str, str] = {}
    files: dict[str, str] = {}
    for call in calls:
        markers.update(call.get("_markers", {}))
        files.update(call.get("_files", {}))
    found: list[dict[str, Any]] = []
    for marker, file_id in markers.items():
        start = text.find(marker)
        while start != -1:
            end = start + len(marker)
            found.append(
                {
                    "type": "file_citation",
                    "text": marker,
                    "start_index": start,
                    "end_index": end,
                    "file_citation": {"file_id": file_id},
                }
            )
            start = text.find(marker, end)
    for match in _SANDBOX_LINK.finditer(text):
        linked = files.get(match.group(1))
        if linked is not None:
            found.append(
                {
                    "type": "file_path",
                    "text": match.group(0),
                    "start_index": match.start(),
                    "end_index": match.end(),
                    "file_path": {"file_id": linked},
                }
            )
    return sorted(found, key=lambda a: a["start_index"])
