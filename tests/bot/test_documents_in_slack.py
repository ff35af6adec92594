"""A PDF shared into a Slack thread, then a question: footnotes and a sources block."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.assistants.retrieval.test_retrieval_extract import make_pdf
from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, Reply, ToolCall, text_reply, tool_calls_reply
from tests.fakes.slack_server import SlackFake

MARKER = re.compile(r"【\d+:\d+†[^】]+】")


def _answer_citing(request: dict[str, Any]) -> Reply:
    tool = next(m for m in reversed(request["messages"]) if m["role"] == "tool")
    marker = MARKER.search(tool["content"])
    assert marker, tool["content"]
    return text_reply(f"Refunds take 14 days{marker.group(0)}, shipping is free{marker.group(0)}.")


async def test_shared_pdf_is_searched_and_cited_with_sources(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    pdf = make_pdf(
        ["Company overview and history.", "Refund policy: refunds are paid within 14 days."]
    )
    shared = slack.add_user_file("policy.pdf", pdf, "application/pdf")
    mention = slack.app_mention("C1", "U1", "<@UBOT> here is our policy")
    thread = mention["event"]["ts"]
    upload = slack.message("C1", "U1", "", thread_ts=thread, subtype="file_share", files=[shared])
    model.script(text_reply("Got it."))
    await slack.deliver(bot.url, mention)
    await bot.bot.conversations.idle()
    await slack.deliver(bot.url, upload)
    await bot.bot.conversations.idle()

    search = ToolCall("file_search", json.dumps({"query": "refund time"}))
    model.script(tool_calls_reply(search))
    model.set_default(_answer_citing)
    await slack.deliver(
        bot.url, slack.message("C1", "U1", "How long do refunds take?", thread_ts=thread)
    )
    await bot.bot.conversations.idle()

    shown = slack.thread_text("C1", thread)
    assert "【" not in shown and "】" not in shown
    assert "Refunds take 14 days[1], shipping is free[1]." in shown
    final = slack.calls_of("chat.update")[-1].args
    blocks = final["blocks"] if isinstance(final["blocks"], list) else json.loads(final["blocks"])
    sources = next(b for b in blocks if b["type"] == "context")
    source_text = " ".join(e["text"] for e in sources["elements"])
    assert "policy.pdf (p. 1)" in source_text  # the chunk starts on page 1
    assert "refunds are paid within 14 days" in source_text
    # The bot downloaded the file with its token, into this conversation's thread only.
    assert all("【" not in c.args.get("markdown_text", "") for c in slack.calls)
