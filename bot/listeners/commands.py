"""`/assistant`: list, use NAME, new, status, help — answered privately to the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.conversations import ThreadKey
from bot.directory import is_dm

if TYPE_CHECKING:
    from bot.app import Bot

__all__ = ["HELP", "register"]

HELP = (
    "*/assistant* chooses who answers here:\n"
    "• `/assistant list` — the assistants, with the one answering here marked\n"
    "• `/assistant use NAME` — let NAME answer in this channel or DM\n"
    "• `/assistant new` — start over: your next message opens a fresh conversation\n"
    "• `/assistant status` — who answers here and what is going on\n"
    "• `/assistant help` — this text"
)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.command("/assistant")
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        words = (command.get("text") or "").strip()
        verb, _, rest = words.partition(" ")
        handler = _HANDLERS.get(verb.lower())
        if handler is None:
            prefix = f"I don't know `{verb}`.\n" if verb and verb.lower() != "help" else ""
            await ack(text=prefix + HELP, response_type="ephemeral")
            return
        await ack(text=await handler(bot, command, rest.strip()), response_type="ephemeral")


async def _list(bot: Bot, command: dict[str, Any], _rest: str) -> str:
    current = await bot.directory.chosen(command["team_id"], command["channel_id"])
    lines = []
    for name in bot.directory.names():
        mark = " ✓ *(answering here)*" if name == current else ""
        lines.append(f"• *{name}*{mark} — {bot.directory.describe(name)}")
    return "Assistants:\n" + "\n".join(lines) + "\nSwitch with `/assistant use NAME`."


async def _use(bot: Bot, command: dict[str, Any], rest: str) -> str:
    name = bot.directory.find(rest) if rest else None
    if name is None:
        known = ", ".join(f"`{n}`" for n in bot.directory.names())
        asked = f"There is no assistant called `{rest}`. " if rest else "Name an assistant. "
        return f"{asked}Known: {known}.\n\n{HELP}"
    team, channel = command["team_id"], command["channel_id"]
    await bot.directory.choose(team, channel, name, command.get("user_id", ""))
    if is_dm(channel):
        await bot.conversations.switch(ThreadKey(team, channel, ""), name)
        return f"*{name}* answers you here from now on."
    return f"*{name}* answers new conversations in this channel from now on."


async def _new(bot: Bot, command: dict[str, Any], _rest: str) -> str:
    team, channel = command["team_id"], command["channel_id"]
    if is_dm(channel):
        await bot.conversations.forget(ThreadKey(team, channel, ""))
        return "Starting over: your next message opens a fresh conversation."
    return "In channels every mention in a new message starts a fresh conversation."


async def _status(bot: Bot, command: dict[str, Any], _rest: str) -> str:
    team, channel = command["team_id"], command["channel_id"]
    name = await bot.directory.chosen(team, channel)
    lines = [f"*{name}* answers here."]
    if is_dm(channel):
        key = ThreadKey(team, channel, "")
        link = await bot.conversations.link(key)
        if link is None:
            lines.append("No conversation yet: your next message starts one.")
        else:
            lines.append(f"Conversation with *{link.assistant_name}* (`{link.engine_thread_id}`).")
            if key in bot.conversations.active:
                lines.append("An answer is being written right now.")
            waiting = await bot.conversations.pending(key)
            if waiting > 1:
                lines.append(f"{waiting - 1} more message(s) waiting for an answer.")
    return "\n".join(lines)


_HANDLERS = {"list": _list, "use": _use, "new": _new, "status": _status}
