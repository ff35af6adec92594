"""Typed engine errors. The engine knows no status codes; `api/errors.py` maps these.

EngineError               anything the engine refuses or cannot do
 ├── InvalidRequest       bad input: a field, a limit, a state that forbids the call
 │    └── Conflict        the thread is locked by an active run (hosted answers 400 too)
 ├── NotFound             no such object
 └── Unavailable          a tool or the model endpoint cannot serve the call right now
"""

from __future__ import annotations

__all__ = ["Conflict", "EngineError", "InvalidRequest", "NotFound", "Unavailable"]


class EngineError(Exception):
    """Base error; carries the OpenAI error body fields."""

    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def as_dict(self) -> dict[str, str | None]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class InvalidRequest(EngineError):
    type = "invalid_request_error"


class Conflict(InvalidRequest):
    """A thread lock clash: hosted Assistants answered it as a 400 invalid_request_error."""


class NotFound(InvalidRequest):
    def __init__(self, kind: str, object_id: str, *, param: str | None = None) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.", param=param)


class Unavailable(EngineError):
    type = "server_error"
