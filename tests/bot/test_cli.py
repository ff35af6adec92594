"""`slack-assistants run` and `check` as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from storage import Database, RunRow, database_url_for
from tests.bot.conftest import ASSISTANTS_YML
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    (tmp_path / "assistants.yml").write_text(ASSISTANTS_YML)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "ASSISTANTS_", "DATABASE_URL"))
    }
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        ASSISTANTS_FILE=str(tmp_path / "assistants.yml"),
        MODEL_MAX_RETRIES="0",
        PYTHONUNBUFFERED="1",
    )
    if url := os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = url
    env.update(values)
    return env


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=env["DATA_DIR"].rsplit("/", 1)[0],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_without_tokens_names_each_missing_variable(tmp_path: Path) -> None:
    code, _out, err = await _cli(_env(tmp_path), "run")
    assert code == 2
    assert "SLACK_BOT_TOKEN is not set" in err
    assert "SLACK_SIGNING_SECRET is not set" in err
    assert "manifest.yml" in err


async def test_check_reports_each_part(tmp_path: Path, slack: SlackFake, model: ModelFake) -> None:
    env = _env(
        tmp_path,
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=slack.signing_secret,
        OPENAI_BASE_URL=model.url,
    )
    code, out, _err = await _cli(env, "check")
    assert code == 0, out
    assert "ok    assistants file:" in out and "Math Tutor, Helper" in out
    assert "ok    database:" in out
    assert "ok    model endpoint:" in out

    (tmp_path / "assistants.yml").write_text(
        ASSISTANTS_YML.replace("    description: A personal", "    descripton: A personal")
    )
    code, out, _err = await _cli(env, "check")
    assert code == 1
    assert "assistants.yml:7: assistants[0].descripton: unknown field" in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start_bot(env: dict[str, str]) -> asyncio.subprocess.Process:
    """`python -m bot run`, returned once it answers /healthz."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(300):  # the process imports and starts: wait for it to listen
            try:
                async with http.get(f"http://127.0.0.1:{env['PORT']}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    process.kill()
    pytest.fail("the bot did not become healthy")


def _bot_env(tmp_path: Path, slack: SlackFake, model: ModelFake, **values: str) -> dict[str, str]:
    return _env(
        tmp_path,
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=slack.signing_secret,
        SLACK_API_URL=slack.url,
        OPENAI_BASE_URL=model.url,
        PORT=str(_free_port()),
        **values,
    )


@pytest.mark.timeout(90)
async def test_run_answers_a_signed_mention_and_stops_cleanly(
    tmp_path: Path, slack: SlackFake, model: ModelFake
) -> None:
    env = _bot_env(tmp_path, slack, model)
    port = env["PORT"]
    process = await _start_bot(env)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert "slack_assistants" in await response.text()
        model.script(text_reply("Hello from the real process."))
        mention = slack.app_mention("C1", "U1", "<@UBOT> hi")
        delivery = await slack.deliver(f"http://127.0.0.1:{port}/slack/events", mention)
        assert delivery.status == 200
        await slack.next_call("chat.stopStream", timeout=20)
        assert slack.thread_text("C1", mention["event"]["ts"]) == "Hello from the real process."
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert slack.bot_token not in err.decode()  # secrets never reach the logs


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("grace", "finished"),
    [("20", True), ("0.5", False)],
    ids=["answer-finishes-within-grace", "answer-outlasts-grace"],
)
async def test_sigterm_lets_the_answer_in_flight_finish_or_end_it_with_a_notice(
    tmp_path: Path,
    slack: SlackFake,
    model: ModelFake,
    database: Database,  # a clean schema when the process shares TEST_DATABASE_URL
    grace: str,
    finished: bool,
) -> None:
    env = _bot_env(tmp_path, slack, model, SHUTDOWN_GRACE_SECONDS=grace)
    model.token_interval = 0.1 if finished else 1.0
    answer = "".join(f"w{i} " for i in range(20))
    model.script(text_reply(answer, chunk_size=3))
    process = await _start_bot(env)
    try:
        mention = slack.app_mention("C1", "U1", "<@UBOT> a long one please")
        delivery = await slack.deliver(f"http://127.0.0.1:{env['PORT']}/slack/events", mention)
        assert delivery.status == 200
        await slack.next_call("chat.startStream", timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()[-2000:]
    text = slack.thread_text("C1", mention["event"]["ts"])
    if finished:
        assert text == answer.strip() or text == answer
    else:
        assert text.startswith("w0") and "the server working on it stopped" in text
    url = database_url_for(env.get("DATABASE_URL"), Path(env["DATA_DIR"]))
    db = Database(url)
    try:
        async with db.session() as session:
            statuses = (await session.exec(select(RunRow.status))).all()
    finally:
        await db.dispose()
    assert statuses == (["completed"] if finished else ["failed"])
