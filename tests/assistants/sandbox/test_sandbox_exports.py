"""The sandbox package's public surface, pinned; and it stays free of Slack."""

from __future__ import annotations

import ast
from pathlib import Path

import assistants.sandbox

PACKAGE = Path(assistants.sandbox.__file__).parent


def test_public_surface() -> None:
    assert sorted(assistants.sandbox.__all__) == [
        "Execution",
        "SandboxConfig",
        "SandboxPool",
        "SandboxUnavailable",
    ]
    for name in assistants.sandbox.__all__:
        assert getattr(assistants.sandbox, name).__module__.startswith("assistants.sandbox.")


def test_every_module_declares_all_and_imports_no_slack() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert "__all__" in names, path.name
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name.startswith("slack")], path.name
