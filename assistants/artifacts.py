"""What a run's built-in tools left behind, for clients that present answers (the Slack bot):
the sources its citation markers point at, the code it ran, the files and images it wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from storage import Database, FileRow, RunStepRow

__all__ = ["Citation", "CodeCall", "OutputFile", "RunArtifacts", "load_artifacts"]


@dataclass(frozen=True, slots=True)
class Citation:
    marker: str
    file_id: str
    filename: str
    page: int | None
    quote: str


@dataclass(frozen=True, slots=True)
class CodeCall:
    code: str
    logs: str


@dataclass(frozen=True, slots=True)
class OutputFile:
    file_id: str
    filename: str
    #: `/mnt/data/NAME` for files the code saved; None for images it displayed.
    sandbox_path: str | None
    mimetype: str | None


@dataclass(frozen=True, slots=True)
class RunArtifacts:
    citations: list[Citation] = field(default_factory=list)
    code: list[CodeCall] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)


async def load_artifacts(db: Database, run_id: str) -> RunArtifacts:
    async with db.session() as session:
        steps = (
            await session.exec(
                select(RunStepRow)
                .where(col(RunStepRow.run_id) == run_id, col(RunStepRow.type) == "tool_calls")
                .order_by(col(RunStepRow.seq))
            )
        ).all()
        calls: list[dict[str, Any]] = [
            call for step in steps for call in step.step_details.get("tool_calls", [])
        ]
        wanted = [fid for call in calls for fid in call.get("_images", [])]
        wanted += [fid for call in calls for fid in call.get("_files", {}).values()]
        rows = (await session.exec(select(FileRow).where(col(FileRow.id).in_(wanted)))).all()
    by_id = {row.id: row for row in rows}
    artifacts = RunArtifacts()
    for call in calls:
        if call["type"] == "file_search":
            results = call["file_search"].get("results", [])
            for marker, file_id in call.get("_markers", {}).items():
                number = int(marker[1:].split(":", 1)[1].split("†", 1)[0])
                result = results[number] if number < len(results) else {}
                text = " ".join(p.get("text", "") for p in result.get("content") or [])
                artifacts.citations.append(
                    Citation(
                        marker=marker,
                        file_id=file_id,
                        filename=result.get("file_name", ""),
                        page=call.get("_pages", {}).get(marker),
                        quote=text,
                    )
                )
        elif call["type"] == "code_interpreter":
            interpreter = call["code_interpreter"]
            logs = "\n".join(o["logs"] for o in interpreter["outputs"] if o["type"] == "logs")
            artifacts.code.append(CodeCall(code=interpreter["input"], logs=logs))
            for file_id in call.get("_images", []):
                if row := by_id.get(file_id):
                    artifacts.files.append(OutputFile(file_id, row.filename, None, row.mimetype))
            for path, file_id in call.get("_files", {}).items():
                if row := by_id.get(file_id):
                    artifacts.files.append(OutputFile(file_id, row.filename, path, row.mimetype))
    return artifacts
