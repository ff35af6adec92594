"""`slack-assistants check`: what is wrong with this installation, and how to fix it."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import openai
from sqlalchemy.engine import make_url

from bot.assistants_file import AssistantsFileError, load_assistants_file
from bot.functions import builtin_functions
from bot.runtime import Runtime
from bot.settings import Settings

__all__ = ["check"]


async def check(settings: Settings, *, out: TextIO = sys.stdout) -> int:
    """Prints one line per check; returns 1 when any check failed."""
    failures = 0

    def report(ok: bool, what: str, detail: str, fix: str = "") -> None:
        nonlocal failures
        failures += not ok
        out.write(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}\n")
        if not ok and fix:
            out.write(f"      fix: {fix}\n")

    missing = settings.missing_for_slack()
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        report(
            name not in missing,
            name,
            "missing (needed by `slack-assistants run`)" if name in missing else "ok",
            "create the Slack app from manifest.yml and copy the value into .env",
        )
    app_token = settings.slack_app_token
    if app_token is not None and not app_token.get_secret_value().startswith("xapp-"):
        report(
            False,
            "SLACK_APP_TOKEN",
            "is not an app-level token (xapp-…)",
            "create one under Basic Information -> App-Level Tokens (connections:write)",
        )
    mode = "Socket Mode" if app_token else "HTTP mode (POST /slack/events)"
    report(True, "Slack mode", mode)

    try:
        file = load_assistants_file(settings.assistants_file, builtin_functions().schemas())
        report(True, "assistants file", f"{file.path}: {', '.join(file.names())}")
    except AssistantsFileError as exc:
        report(False, "assistants file", str(exc), "correct the line named above")

    runtime = Runtime(settings)
    try:
        url = make_url(runtime.db.url).render_as_string(hide_password=True)
        try:
            await runtime.db.upgrade()
            await runtime.db.ping()
            report(True, "database", url)
        except Exception as exc:  # any driver error: report it, never a traceback
            report(False, "database", f"{url}: {exc}", "check DATABASE_URL and that it is up")
        where = settings.openai_base_url or "https://api.openai.com/v1"
        try:
            async with asyncio.timeout(15):
                models = await runtime.model.models.list()
            report(True, "model endpoint", f"{where} ({len(models.data)} models listed)")
        except (openai.APIError, TimeoutError) as exc:
            report(
                False,
                "model endpoint",
                f"{where}: {type(exc).__name__}: {getattr(exc, 'message', exc)}",
                "set OPENAI_BASE_URL (any Chat Completions server) and OPENAI_API_KEY",
            )
    finally:
        await runtime.model.close()
        await runtime.db.dispose()
    return 1 if failures else 0
