"""`assistants.yml`: validation with line numbers, built-in functions, sync by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistants import Engine
from bot.assistants_file import AssistantsFileError, load_assistants_file, sync_assistants
from bot.functions import builtin_functions

FUNCTIONS = builtin_functions().schemas()

GOOD = """\
defaults:
  dm: Tutor
assistants:
  - name: Tutor
    model: m
    tools:
      - type: function
        function: get_current_time
  - name: Other
    model: m
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "assistants.yml"
    path.write_text(text)
    return load_assistants_file(path, FUNCTIONS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("    model: m\n    tools", "    modle: m\n    tools"),
            ":5: assistants[0].modle: unknown field",
        ),
        (
            GOOD.replace("function: get_current_time", "function: nope"),
            ":8: assistants[0].tools[0].function: no built-in function 'nope'",
        ),
        (GOOD.replace("dm: Tutor", "dm: Nobody"), ":2: defaults.dm: no assistant named 'Nobody'"),
        (
            GOOD.replace("name: Other", "name: Tutor"),
            ":9: assistants[1].name: duplicate name 'Tutor'",
        ),
        (GOOD.replace("defaults:", "defaults: [oops"), ":2: invalid YAML"),
        (GOOD + "extra: 1\n", ":11: extra: unknown field"),
        (
            GOOD.replace("  - name: Other\n", "  - description: no name\n"),
            ":9: assistants[1].name: every assistant needs a name",
        ),
        ("", "the file is empty"),
    ],
)
def test_mistakes_name_the_line_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AssistantsFileError) as raised:
        _load(tmp_path, text)
    assert message in str(raised.value)


def test_builtin_function_names_expand_to_their_schema(tmp_path: Path) -> None:
    file = _load(tmp_path, GOOD)
    tool = file.assistants[0].tools[0]  # type: ignore[attr-defined]
    assert tool.function.name == "get_current_time"
    assert tool.function.parameters["properties"]["timezone"]["type"] == "string"
    assert file.default_for("dm") == "Tutor"  # type: ignore[attr-defined]
    assert file.default_for("channel") == "Tutor"  # type: ignore[attr-defined]


async def test_sync_creates_then_updates_by_name_never_duplicates(
    tmp_path: Path, engine: Engine
) -> None:
    file = _load(tmp_path, GOOD)
    first = await sync_assistants(engine, file)  # type: ignore[arg-type]
    changed = _load(
        tmp_path, GOOD.replace("  - name: Other\n    model: m", "  - name: Other\n    model: m2")
    )
    second = await sync_assistants(engine, changed)  # type: ignore[arg-type]
    assert first == second
    from assistants import ListQuery

    listed = await engine.assistants.list(ListQuery(limit=100))
    assert sorted(a.name or "" for a in listed.data) == ["Other", "Tutor"]
    assert (await engine.assistants.retrieve(second["Other"])).model == "m2"
