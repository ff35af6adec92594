"""Helpers shared by the sandbox tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from assistants.sandbox import SandboxConfig, SandboxPool, SandboxUnavailable

PYTHON = Path(os.environ.get("SANDBOX_PYTHON", "/opt/slack-assistants/sandbox-venv/bin/python"))


def make_root() -> Path:
    # not pytest's tmp_path: its parents are 0700, and bubblewrap runs as the kernel's uid
    root = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    os.chmod(root, 0o711)
    return root


def make_config(root: Path, **overrides: Any) -> SandboxConfig:
    settings: dict[str, Any] = {
        "root": root / "work",
        "python": PYTHON,
        "exec_timeout": 10.0,
        "warm_spare": False,
    }
    settings.update(overrides)
    return SandboxConfig(**settings)


def require_sandbox(config: SandboxConfig) -> None:
    try:
        SandboxPool(config).check()
    except SandboxUnavailable as exc:
        if os.environ.get("SANDBOX_REQUIRED") == "1":
            pytest.fail(f"SANDBOX_REQUIRED=1 but the sandbox is unavailable: {exc}")
        pytest.skip(f"sandbox unavailable here: {exc}")


async def wait_for_spare(pool: SandboxPool) -> None:
    """The pool notifies its condition when the warm spare is ready (tests may look inside)."""
    async with asyncio.timeout(60), pool._cond:
        await pool._cond.wait_for(lambda: pool._spare is not None)


def processes_mentioning(text: str) -> list[int]:
    """Host pids whose command line contains `text` (kernels carry their folder paths)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    if text.encode() in handle.read():
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids
