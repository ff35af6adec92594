"""Sandbox fixtures: real kernels in bubblewrap, on a temp root the kernels' uids can reach.

Every test here is skipped, with the reason, when `SandboxPool.check()` says the sandbox cannot
run on this machine (scripts/build-sandbox fixes that); with SANDBOX_REQUIRED=1 (CI) that is a
failure instead. SANDBOX_PYTHON overrides the venv python build-sandbox made.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.assistants.sandbox.sandbox_support import make_config, make_root, require_sandbox


@pytest.fixture(scope="session")
def sandbox_available() -> Iterator[None]:
    root = make_root()
    try:
        require_sandbox(make_config(root))
        yield
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sandbox_root(sandbox_available: None) -> Iterator[Path]:
    root = make_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)
