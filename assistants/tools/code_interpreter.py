"""The `code_interpreter` tool: the model's Python runs in the thread's sandboxed kernel.

Files given to the tool (assistant and thread `tool_resources`, message attachments) are
copied into `/mnt/data` first. Output comes back as the hosted step outputs (`logs`, `image`);
every image and every file the code writes under `/mnt/data` becomes an engine file, so
`sandbox:/mnt/data/NAME` links in the answer turn into `file_path` annotations.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from assistants.errors import NotFound
from assistants.files import FileService, clean_filename
from assistants.sandbox import Execution, SandboxPool, SandboxUnavailable
from assistants.tools import ToolContext, attached_files, one_argument, one_argument_schema
from storage import Database

__all__ = ["CodeInterpreterTool"]

_LOG_LIMIT = 20_000  # characters of output the model reads back


class CodeInterpreterTool:
    type = "code_interpreter"

    def __init__(self, *, db: Database, pool: SandboxPool, files: FileService) -> None:
        self._db, self._pool, self._files = db, pool, files
        #: thread id -> file ids already copied into its /mnt/data (this process's kernels).
        self._copied: dict[str, set[str]] = {}

    def schema(self, config: dict[str, Any]) -> dict[str, Any]:
        return one_argument_schema(
            "code_interpreter",
            "Run Python 3 in a stateful Jupyter kernel (variables persist in this conversation). "
            "numpy, pandas, matplotlib, sympy and scipy are installed; there is no internet "
            "access. Files shared with you are in /mnt/data; save files you create there and "
            "link them as sandbox:/mnt/data/NAME. Plots shown with plt.show() are sent to the "
            "user.",
            "code",
            "Python code.",
        )

    def begin(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {
            "id": call_id,
            "type": "code_interpreter",
            "code_interpreter": {"input": one_argument(arguments, "code"), "outputs": []},
        }

    async def call(self, call: dict[str, Any], ctx: ToolContext) -> None:
        key = ctx.thread.id
        # The SDK's on_tool_call_delta sees the code first, then (below) its outputs.
        ctx.emit(
            {
                "type": "code_interpreter",
                "code_interpreter": {"input": call["code_interpreter"]["input"]},
            }
        )
        try:
            self._pool.check()
            await self._copy_inputs(ctx)
            execution = await self._pool.execute(key, call["code_interpreter"]["input"])
        except SandboxUnavailable as exc:
            message = f"code_interpreter is unavailable on this server: {exc}"
            unavailable = [{"type": "logs", "logs": message}]
            call["code_interpreter"]["outputs"] = unavailable
            call["_output"] = message
            ctx.emit(
                {
                    "type": "code_interpreter",
                    "code_interpreter": {"outputs": call["code_interpreter"]["outputs"]},
                }
            )
            return
        outputs: list[dict[str, Any]] = []
        logs = _logs(execution)
        if logs:
            outputs.append({"type": "logs", "logs": logs})
        images: list[str] = []
        for number, png in enumerate(execution.images):
            image = await self._files.create_bytes(
                f"image_{ctx.ordinal}_{number}.png",
                "assistants_output",
                png,
                mimetype="image/png",
                source=key,
                internal=True,
            )
            images.append(image.id)
            outputs.append({"type": "image", "image": {"file_id": image.id}})
        written = await self._store_written(execution.files, key)
        call["code_interpreter"]["outputs"] = outputs
        call["_images"] = images
        call["_files"] = written
        call["_output"] = _model_output(logs, images, written, execution)
        ctx.emit({"type": "code_interpreter", "code_interpreter": {"outputs": _indexed(outputs)}})

    async def _store_written(self, paths: list[Path], key: str) -> dict[str, str]:
        """Each file the code wrote -> an engine file, keyed by its /mnt/data path."""
        workdir = self._pool.workdir(key)
        found: dict[str, str] = {}
        for path in paths:
            try:
                relative = path.relative_to(workdir)
                # Never open sandbox paths by name: the code may have planted a symlink.
                data = await asyncio.to_thread(
                    self._pool.read_file, key, path, limit=self._files.max_bytes
                )
            except (ValueError, OSError):
                continue  # gone again, a link, too big, or not under the working folder
            mimetype = mimetypes.guess_type(path.name)[0]
            stored = await self._files.create_bytes(
                path.name, "assistants_output", data, mimetype=mimetype, source=key, internal=True
            )
            found[f"/mnt/data/{relative.as_posix()}"] = stored.id
        return found

    async def _copy_inputs(self, ctx: ToolContext) -> None:
        """Copies the files meant for the interpreter into /mnt/data, once each."""
        file_ids = _resource_files(ctx.assistant.tool_resources) + _resource_files(
            ctx.thread.tool_resources
        )
        file_ids += await attached_files(self._db, ctx.thread.id, "code_interpreter")
        copied = self._copied.setdefault(ctx.thread.id, set())
        for file_id in dict.fromkeys(file_ids):
            if file_id in copied:
                continue
            try:
                row = await self._files.row(file_id)
                data = await self._files.read(file_id)
            except (NotFound, OSError):  # deleted meanwhile: the code will not find it
                continue
            name = clean_filename(row.filename)
            await asyncio.to_thread(self._pool.put_file, ctx.thread.id, name, data)
            copied.add(file_id)


def _indexed(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output deltas carry their position, as the stream's tool call deltas do."""
    return [{"index": index, **output} for index, output in enumerate(outputs)]


def _resource_files(resources: dict[str, Any] | None) -> list[str]:
    return list(((resources or {}).get("code_interpreter") or {}).get("file_ids") or [])


def _logs(execution: Execution) -> str:
    parts = [execution.stdout, execution.stderr]
    if execution.result is not None:
        parts.append(execution.result)
    if execution.error:
        parts.append(execution.error)
    return "\n".join(p.rstrip("\n") for p in parts if p and p.strip())


def _model_output(
    logs: str, images: list[str], written: dict[str, str], execution: Execution
) -> str:
    lines = [logs[:_LOG_LIMIT] if logs else "(no output)"]
    if len(logs) > _LOG_LIMIT:
        lines.append(f"[output truncated: {len(logs)} characters]")
    if images:
        lines.append(f"[{len(images)} image(s) shown to the user]")
    for path in written:
        lines.append(f"[file saved: sandbox:{path}]")
    if execution.restarted:
        lines.append("[the kernel was restarted: variables from earlier calls are gone]")
    return "\n".join(lines)
