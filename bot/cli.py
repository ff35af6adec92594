"""The `slack-assistants` command: run, serve, chat, check, db."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.logs import configure_logging
from bot.settings import Settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slack-assistants", description="Assistants in Slack, on an embedded engine."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Slack bot (and the REST API when enabled)")
    commands.add_parser("serve", help="serve only the Assistants v2 REST API (no Slack)")
    chat_parser = commands.add_parser("chat", help="talk to an assistant in the terminal")
    chat_parser.add_argument("--assistant", help="name from assistants.yml (default: the DM one)")
    chat_parser.add_argument("--new", action="store_true", help="start a fresh conversation")
    commands.add_parser("check", help="validate settings, assistants.yml, database and model")
    db_parser = commands.add_parser("db", help="the database schema: upgrade, current")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser(
        "upgrade", help="migrate the database to the newest schema (run and serve do it too)"
    )
    db_commands.add_parser("current", help="print the database's schema revision")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "db":  # the schema alone: neither the engine nor assistants.yml
        return asyncio.run(_db(settings, args.db_command))
    from bot.assistants_file import AssistantsFileError

    try:
        if args.command == "run":
            return _run(settings)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "chat":
            from bot.chat import chat

            return asyncio.run(chat(settings, assistant=args.assistant, new=args.new))
        from bot.check import check

        return asyncio.run(check(settings))
    except AssistantsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(settings: Settings) -> int:
    from bot.runtime import Runtime
    from bot.server import StartupError, http_app

    missing = settings.missing_for_slack()
    if missing:
        for name in missing:
            print(f"error: {name} is not set.", file=sys.stderr)
        print(
            "Create the Slack app from manifest.yml (https://api.slack.com/apps -> Create New App "
            "-> From a manifest), install it, and put the bot token (xoxb-...) and the signing "
            "secret into .env or the environment. See README.md.",
            file=sys.stderr,
        )
        return 2
    mode = "Socket Mode" if settings.slack_app_token else "HTTP mode (POST /slack/events)"
    logging.getLogger("bot").info("starting the bot in %s on port %s", mode, settings.port)
    try:
        web.run_app(
            http_app(Runtime(settings), slack=True, owns_process=True),
            port=settings.port,
            print=None,
        )
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(settings: Settings) -> int:
    from bot.runtime import Runtime
    from bot.server import http_app

    key = settings.assistants_api_key
    if key is None or not key.get_secret_value():
        print(
            "error: ASSISTANTS_API_KEY is not set. `serve` exposes the REST API, which needs a "
            "bearer key: set ASSISTANTS_API_KEY in the environment or .env.",
            file=sys.stderr,
        )
        return 2
    logging.getLogger("bot").info("serving the Assistants API on port %s", settings.port)
    web.run_app(http_app(Runtime(settings), owns_process=True), port=settings.port, print=None)
    return 0


async def _db(settings: Settings, command: str) -> int:
    from storage import Database, database_url_for
    from storage.migrations import head

    db = Database(database_url_for(settings.database_url, settings.data_dir))
    try:
        if command == "upgrade":
            await db.upgrade()
        revision = await db.revision()
    except (SQLAlchemyError, OSError) as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        print("Check DATABASE_URL (or DATA_DIR for SQLite) and that it is up.", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    if revision is None:
        print("none (an empty database, or one from before migrations: run `db upgrade`)")
    else:
        print(f"{revision} (head)" if revision == head() else revision)
    return 0
