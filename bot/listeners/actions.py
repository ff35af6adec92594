"""Buttons: feedback on an answer, and stopping an answer that takes long."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from assistants import InvalidRequest, NotFound
from bot.driver import FEEDBACK_ACTION
from bot.metrics import FEEDBACK

if TYPE_CHECKING:
    from bot.app import Bot

__all__ = ["STOP_ACTION", "register", "stop_button_blocks"]

log = logging.getLogger("bot.actions")

STOP_ACTION = "stop_answer"


def stop_button_blocks(thread_id: str, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Still working on it…"},
            "accessory": {
                "type": "button",
                "action_id": STOP_ACTION,
                "text": {"type": "plain_text", "text": "Stop"},
                "style": "danger",
                "value": f"{thread_id}:{run_id}",
            },
        }
    ]


def register(app: AsyncApp, bot: Bot) -> None:
    @app.action(FEEDBACK_ACTION)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        value = str(body["actions"][0].get("value", ""))
        FEEDBACK.labels(value="good" if value == "good" else "bad").inc()
        log.info("feedback %s from %s", value, body.get("user", {}).get("id"))
        await respond(
            text="Thanks for the feedback!", response_type="ephemeral", replace_original=False
        )

    @app.action(STOP_ACTION)
    async def on_stop(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        thread_id, _, run_id = str(body["actions"][0].get("value", "")).partition(":")
        try:
            await bot.engine.runs.cancel(thread_id, run_id)
            text = "Stopping that answer."
        except (InvalidRequest, NotFound):
            text = "That answer has already finished."
        await respond(text=text, response_type="ephemeral", replace_original=True)
