"""What the code interpreter made, posted into the Slack thread with the files upload v2 flow:
images and files it wrote, and the code it ran as a collapsed Python snippet."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from assistants import Engine, EngineError, RunArtifacts

__all__ = ["upload_outputs"]

log = logging.getLogger("bot.uploads")


async def upload_outputs(
    client: AsyncWebClient,
    engine: Engine,
    *,
    channel: str,
    thread_ts: str,
    artifacts: RunArtifacts,
) -> dict[str, str]:
    """Uploads the run's output files; returns engine file id -> Slack permalink."""
    links: dict[str, str] = {}
    uploads = []
    for output in artifacts.files:
        try:
            data = await engine.files.read(output.file_id)
        except (EngineError, OSError) as exc:
            log.warning("output %s unreadable: %s", output.file_id, exc)
            continue
        uploads.append(
            (output.file_id, {"file": data, "filename": output.filename, "title": output.filename})
        )
    if artifacts.code:
        source = "\n\n".join(
            call.code + ("\n# output:\n# " + call.logs.replace("\n", "\n# ") if call.logs else "")
            for call in artifacts.code
        )
        uploads.append(("", {"content": source, "filename": "code.py", "title": "Code I ran"}))
    if not uploads:
        return links
    try:
        response = await client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            file_uploads=[upload for _, upload in uploads],
        )
    except SlackApiError as exc:
        log.warning("uploading outputs failed: %s", exc.response.get("error"))
        return links
    # completeUploadExternal answers with ids and titles only; files.info has the permalink.
    for (file_id, _), uploaded in zip(uploads, response.get("files") or [], strict=False):
        if not file_id:
            continue
        try:
            info = await client.files_info(file=uploaded["id"])
        except SlackApiError as exc:
            log.info("no permalink for %s: %s", uploaded["id"], exc.response.get("error"))
            continue
        if permalink := (info.get("file") or {}).get("permalink"):
            links[file_id] = str(permalink)
    return links


def _with_output(code: str, logs: str) -> str:
    if not logs:
        return code
    return code + "\n# output:\n# " + logs.replace("\n", "\n# ")
