"""`assistants.yml`: declarative assistants, validated with line numbers and synced by name.

A mistake in the file stops the start with the line and the field at fault, e.g.
`assistants.yml:7: assistants[0].tols: unknown field`, instead of a run failing later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistants import AssistantCreate, AssistantUpdate, Engine, InvalidRequest, parse

__all__ = ["AssistantsFile", "AssistantsFileError", "load_assistants_file", "sync_assistants"]


class AssistantsFileError(Exception):
    """The file cannot be used; the message names the file, the line and the field."""


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dm: str | None = None
    channel: str | None = None


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: Defaults = Field(default_factory=Defaults)
    assistants: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class AssistantsFile:
    path: Path
    defaults: Defaults
    assistants: list[AssistantCreate]

    def names(self) -> list[str]:
        return [a.name or "" for a in self.assistants]

    def default_for(self, surface: str) -> str:
        """The assistant answering on `dm` or `channel` until someone chooses another."""
        chosen = getattr(self.defaults, surface, None)
        return chosen or self.names()[0]


def load_assistants_file(path: Path, functions: Mapping[str, dict[str, Any]]) -> AssistantsFile:
    """Parses and validates the file; `functions` maps built-in handler names to schemas."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AssistantsFileError(f"{path}: cannot read the assistants file: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AssistantsFileError(f"{where}: invalid YAML: {exc}") from exc
    if root is None:
        raise AssistantsFileError(f"{path}: the file is empty; it needs an 'assistants' list")
    data = yaml.safe_load(text)
    lines = _lines(root)
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _error(path, lines, tuple(error["loc"]), error["msg"]) from exc
    assistants: list[AssistantCreate] = []
    seen: set[str] = set()
    for index, entry in enumerate(model.assistants):
        loc: tuple[str | int, ...] = ("assistants", index)
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise _error(path, lines, (*loc, "name"), "every assistant needs a name")
        if entry["name"] in seen:
            raise _error(path, lines, (*loc, "name"), f"duplicate name {entry['name']!r}")
        seen.add(entry["name"])
        expanded = {
            **entry,
            "tools": _expand_tools(entry.get("tools"), functions, path, lines, loc),
        }
        if entry.get("tools") is None:
            del expanded["tools"]
        try:
            assistants.append(parse(AssistantCreate, expanded))
        except InvalidRequest as exc:
            field = tuple(_split_param(exc.param or ""))
            raise _error(path, lines, (*loc, *field), exc.message) from exc
    file = AssistantsFile(path=path, defaults=model.defaults, assistants=assistants)
    for surface in ("dm", "channel"):
        chosen = getattr(model.defaults, surface)
        if chosen is not None and chosen not in seen:
            raise _error(
                path,
                lines,
                ("defaults", surface),
                f"no assistant named {chosen!r} (known: {', '.join(sorted(seen))})",
            )
    return file


async def sync_assistants(engine: Engine, file: AssistantsFile) -> dict[str, str]:
    """Creates or updates each assistant by name (never a duplicate); returns name -> id."""
    ids: dict[str, str] = {}
    for spec in file.assistants:
        name = spec.name or ""
        existing = await engine.assistants.find_by_name(name)
        if existing is None:
            ids[name] = (await engine.assistants.create(spec)).id
        else:
            update = AssistantUpdate.model_validate(spec.model_dump(exclude_unset=True))
            ids[name] = (await engine.assistants.update(existing.id, update)).id
    return ids


def _expand_tools(
    tools: Any,
    functions: Mapping[str, dict[str, Any]],
    path: Path,
    lines: dict[tuple[str | int, ...], int],
    loc: tuple[str | int, ...],
) -> Any:
    """`{type: function, function: get_current_time}` -> the built-in handler's schema."""
    if not isinstance(tools, list):
        return tools
    expanded = []
    for index, tool in enumerate(tools):
        if isinstance(tool, dict) and isinstance(tool.get("function"), str):
            name = tool["function"]
            if name not in functions:
                known = ", ".join(sorted(functions)) or "none"
                raise _error(
                    path,
                    lines,
                    (*loc, "tools", index, "function"),
                    f"no built-in function {name!r} (known: {known})",
                )
            tool = {**tool, "function": functions[name]}
        expanded.append(tool)
    return expanded


def _lines(
    node: yaml.Node, loc: tuple[str | int, ...] = (), line: int | None = None
) -> dict[tuple[str | int, ...], int]:
    """Maps every path in the document to the 1-based line where it starts (a key's line)."""
    found = {loc: line or node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found.update(_lines(value, (*loc, key.value), key.start_mark.line + 1))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.update(_lines(item, (*loc, index)))
    return found


def _split_param(param: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in param.replace("[", ".").replace("]", "").split("."):
        if piece:
            parts.append(int(piece) if piece.isdigit() else piece)
    return parts


def _error(
    path: Path, lines: dict[tuple[str | int, ...], int], loc: tuple[Any, ...], reason: str
) -> AssistantsFileError:
    line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    where = f"{path}:{line}" if line else str(path)
    if reason.startswith("Extra inputs are not permitted") or reason.startswith(
        "Unrecognized request argument"
    ):
        reason = "unknown field"
    return AssistantsFileError(f"{where}: {field}: {reason}")
