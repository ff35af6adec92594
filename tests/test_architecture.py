"""The import rules of STYLE.md: the engine never imports Slack; the bot uses only the
engine's public names (what `assistants/__init__.py` lists)."""

from __future__ import annotations

import ast
from pathlib import Path

import assistants

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> list[tuple[Path, str, list[str]]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module, [alias.name for alias in node.names]))
    return found


def test_engine_never_imports_slack() -> None:
    slack = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module, _ in _imports("assistants")
        if module.split(".")[0] in ("slack_bolt", "slack_sdk", "bot")
    ]
    assert slack == []


def test_bot_uses_only_the_engines_public_names() -> None:
    private = []
    for path, module, names in _imports("bot"):
        if module == "assistants":
            private += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n not in assistants.__all__
            ]
        elif module.startswith("assistants."):
            private.append(f"{path.relative_to(ROOT)}: {module}")
    assert private == []


def test_tables_live_in_storage() -> None:
    outside = [
        str(path.relative_to(ROOT))
        for package in ("assistants", "bot")
        for path in (ROOT / package).rglob("*.py")
        if "table=True" in path.read_text(encoding="utf-8")
    ]
    assert outside == []
