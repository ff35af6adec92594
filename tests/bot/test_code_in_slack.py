"""code_interpreter answers in Slack: the code shown as a snippet, plots and files uploaded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.assistants.sandbox.sandbox_support import make_root
from tests.assistants.test_code_interpreter_api import sandbox_config
from tests.bot.conftest import ASSISTANTS_YML, BotUnderTest
from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply
from tests.fakes.slack_server import SlackFake

_TUTOR_LINE = "    instructions: You are a personal math tutor.\n"
TUTOR = ASSISTANTS_YML.replace(
    _TUTOR_LINE, _TUTOR_LINE + "    tools:\n      - type: code_interpreter\n"
)


@pytest.fixture
def bot_settings(bot_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    (tmp_path / "assistants.yml").write_text(TUTOR)
    root = make_root()  # the sandbox uid must reach the working folders (tmp_path is 0700)
    sandbox_config(root / "sandboxes")
    yield bot_settings.model_copy(update={"data_dir": root})
    shutil.rmtree(root, ignore_errors=True)


async def test_plot_and_csv_are_uploaded_into_the_thread(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    code = (
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.plot([0, 1, 2], [0, 1, 4]); plt.show()\n"
        "pd.DataFrame({'x': [1, 2]}).to_csv('/mnt/data/squares.csv', index=False)\n"
        "print('saved')"
    )
    model.script(
        tool_calls_reply(ToolCall("code_interpreter", json.dumps({"code": code}))),
        text_reply("Here is the plot and [the data](sandbox:/mnt/data/squares.csv)."),
    )
    dm = slack.message("D1", "U1", "plot squares", channel_type="im")
    await slack.deliver(bot.url, dm)
    await bot.bot.conversations.idle()

    uploaded = {f["name"]: f for f in slack.files.values() if f.get("name") != "plot squares"}
    assert {"image_0_0.png", "squares.csv", "code.py"} <= set(uploaded)
    assert slack.file_content(uploaded["image_0_0.png"]["id"]).startswith(b"\x89PNG")
    assert slack.file_content(uploaded["squares.csv"]["id"]).decode().split() == ["x", "1", "2"]
    assert "print('saved')" in slack.file_content(uploaded["code.py"]["id"]).decode()
    shown = slack.thread_text("D1", dm["event"]["ts"])
    assert uploaded["squares.csv"]["permalink"] in shown
    assert "sandbox:" not in shown
