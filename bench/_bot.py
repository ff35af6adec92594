"""The bot under load, in its own process so its CPU time and memory are its own.

    python -m bench._bot '{"slack_url": ..., "model_url": ..., "data_dir": ..., "interval": 0.7}'

Optional keys: "interval", "stop_button_after", "database_url", and "slack_pacing" (default
true: the bot keeps to Slack's published limits; false when the emulator enforces none).

Prints ``PORT <n>`` once `/slack/events` (and `/v1`) listen on 127.0.0.1, then serves until
stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from bot.conversations import ReplyOptions
from bot.runtime import Runtime
from bot.server import http_app
from bot.settings import Settings

ASSISTANTS_YML = """\
defaults:
  dm: Bench
  channel: Bench
assistants:
  - name: Bench
    model: fake-model
    instructions: You are a helpful assistant.
"""

API_KEY = "bench-api-key"


async def main(config: dict[str, str | float | bool]) -> None:
    data_dir = Path(str(config["data_dir"]))
    settings = Settings(
        _env_file=None,
        slack_bot_token="xoxb-test",
        slack_signing_secret="test-signing-secret",
        slack_app_token=None,
        slack_api_url=str(config["slack_url"]),
        slack_pacing=bool(config.get("slack_pacing", True)),
        openai_base_url=str(config["model_url"]),
        openai_api_key="model-key",
        model_max_retries=0,
        data_dir=data_dir,
        database_url=config.get("database_url") or None,
        assistants_file=data_dir / "assistants.yml",
        assistants_api_key=API_KEY,
        log_level="WARNING",
    )
    options = ReplyOptions(
        interval=float(config.get("interval", 0.7)),
        stop_button_after=float(config.get("stop_button_after", 3.0)),
    )
    app = http_app(Runtime(settings), slack=True, reply_options=options, owns_process=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    await runner.cleanup()


def _run(config: dict[str, str | float | bool]) -> None:
    data_dir = Path(str(config["data_dir"]))
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "assistants.yml").write_text(ASSISTANTS_YML)
    profile_to = os.environ.get("BENCH_PROFILE")  # a cProfile dump of the bot, for hot paths
    if not profile_to:
        asyncio.run(main(config))
        return
    import cProfile

    with cProfile.Profile() as profiler:
        asyncio.run(main(config))
    profiler.dump_stats(profile_to)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _run(json.loads(sys.argv[1]))
