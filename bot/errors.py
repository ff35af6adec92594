"""Engine errors as short, friendly Slack text (the one place this mapping lives)."""

from __future__ import annotations

from assistants import Conflict, EngineError, InvalidRequest, NotFound, Unavailable

__all__ = ["friendly_error"]


def friendly_error(exc: EngineError) -> str:
    if isinstance(exc, Conflict):
        return ":hourglass: I'm still busy with an earlier answer here; please try again shortly."
    if isinstance(exc, NotFound):
        return ":warning: This conversation's assistant is gone. Try `/assistant list`."
    if isinstance(exc, InvalidRequest):
        return f":warning: I couldn't take that message: {exc.message}"
    if isinstance(exc, Unavailable):
        return f":warning: {exc.message}"
    return ":warning: Sorry, something went wrong. Please try again."
