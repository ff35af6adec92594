"""Internal function handlers the model can call, with schemas derived from their signatures.

    @functions.register
    async def get_current_time(ctx: FunctionContext, timezone: str = "UTC") -> dict[str, str]:
        '''The current date and time.

        Args:
            timezone: An IANA time zone such as Europe/Paris.
        '''

The first docstring paragraph becomes the description, `Args:` lines the parameter
descriptions, type hints the JSON schema. A handler's mistakes never end a run: bad arguments,
exceptions, timeouts and unknown names all become an `{"error": ...}` output the model can read.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_type_hints

from pydantic import ValidationError, create_model

__all__ = ["FunctionContext", "FunctionRegistry", "Handler"]

log = logging.getLogger("bot.functions")

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionContext:
    """Where a call comes from; handlers read the Slack client and clock from here only."""

    team_id: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    user_id: str | None = None
    client: Any = None  # slack_sdk AsyncWebClient in Slack; None in the terminal chat
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Registered:
    handler: Handler
    schema: dict[str, Any]
    arguments: type[Any]


class FunctionRegistry:
    def __init__(self, *, timeout: float = 10.0) -> None:
        self._functions: dict[str, _Registered] = {}
        self._timeout = timeout

    def register(self, handler: Handler) -> Handler:
        name = handler.__name__
        if name in self._functions:
            raise ValueError(f"function {name!r} is registered twice")
        schema, arguments = _schema(handler)
        self._functions[name] = _Registered(handler, schema, arguments)
        return handler

    def schemas(self) -> dict[str, dict[str, Any]]:
        """name -> `{name, description, parameters}` as an assistant's function tool takes it."""
        return {name: item.schema for name, item in self._functions.items()}

    async def call(self, name: str, arguments: str, ctx: FunctionContext) -> str:
        """Runs one call and returns its output text; never raises for the model's mistakes."""
        item = self._functions.get(name)
        if item is None:
            return _error(f"unknown function {name!r}; available: {sorted(self._functions)}")
        try:
            raw = json.loads(arguments or "{}")
            if not isinstance(raw, dict):
                return _error("arguments must be a JSON object")
            values = item.arguments.model_validate(raw)
        except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError
            detail = _validation_text(exc) if isinstance(exc, ValidationError) else str(exc)
            return _error(f"invalid arguments for {name}: {detail}")
        try:
            async with asyncio.timeout(self._timeout):
                result = await item.handler(ctx, **dict(values))
        except TimeoutError:
            return _error(f"{name} did not finish within {self._timeout:g} s")
        except Exception as exc:
            log.warning("function %s raised %s", name, type(exc).__name__, exc_info=True)
            return _error(f"{name} failed: {exc}")
        return result if isinstance(result, str) else json.dumps(result, default=str)


def _error(message: str) -> str:
    return json.dumps({"error": message})


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )


def _schema(handler: Handler) -> tuple[dict[str, Any], type[Any]]:
    signature = inspect.signature(handler)
    hints = get_type_hints(handler)
    params = list(signature.parameters.values())
    if not params or params[0].name != "ctx":
        raise TypeError(f"{handler.__name__} must take `ctx: FunctionContext` first")
    description, arg_docs = _docstring(inspect.getdoc(handler) or "")
    fields: dict[str, Any] = {}
    for param in params[1:]:
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    arguments = create_model(f"{handler.__name__}_arguments", **fields)
    parameters = arguments.model_json_schema()
    parameters.pop("title", None)
    for name, prop in parameters.get("properties", {}).items():
        prop.pop("title", None)
        if name in arg_docs:
            prop["description"] = arg_docs[name]
    parameters.setdefault("required", [])
    schema = {"name": handler.__name__, "description": description, "parameters": parameters}
    return schema, arguments


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    summary, _, rest = doc.partition("\n\n")
    args: dict[str, str] = {}
    in_args = False
    for line in rest.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        match = re.match(r"\s+(\w+)(?: \([^)]*\))?:\s*(.+)", line) if in_args else None
        if match:
            args[match.group(1)] = match.group(2).strip()
        elif in_args and line.strip() and not line.startswith(" "):
            in_args = False
    return " ".join(summary.split()), args
