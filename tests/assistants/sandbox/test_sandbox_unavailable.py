"""Where the sandbox cannot run, it says why and how to fix it, and never runs code anyway.

These need no working sandbox: each breaks one precondition on purpose.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistants.sandbox import SandboxConfig, SandboxPool, SandboxUnavailable
from assistants.sandbox._processes import sweep_stale_rundirs
from assistants.sandbox._workdir import dirname_for
from tests.assistants.sandbox.sandbox_support import PYTHON, make_root


@pytest.fixture
def root() -> Iterator[Path]:
    path = make_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_venv(root: Path, target: Path, *, ipykernel: bool) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {target.parent}\n")
    (venv / "bin" / "python").symlink_to(target)
    if ipykernel:
        package = venv / "lib" / "python3.11" / "site-packages" / "ipykernel"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
    return venv / "bin" / "python"


def unavailable(config: SandboxConfig) -> str:
    with pytest.raises(SandboxUnavailable) as caught:
        SandboxPool(config).check()
    return str(caught.value)


def test_missing_venv_python(root: Path) -> None:
    message = unavailable(SandboxConfig(root=root / "w", python=root / "nope" / "bin" / "python"))
    assert "does not exist" in message and "scripts/build-sandbox" in message


def test_missing_bubblewrap(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(root))
    message = unavailable(SandboxConfig(root=root / "w", python=PYTHON))
    assert message == "bubblewrap is not installed (no bwrap on PATH): run scripts/build-sandbox"


def test_venv_outside_usr_is_refused(root: Path) -> None:
    interpreter = root / "pyenv-python"
    interpreter.write_text("#!/bin/sh\n")
    interpreter.chmod(0o755)
    python = fake_venv(root, interpreter, ipykernel=True)
    message = unavailable(SandboxConfig(root=root / "w", python=python))
    assert "outside /usr" in message and "pyenv" in message and "build-sandbox" in message


def test_venv_without_ipykernel(root: Path) -> None:
    python = fake_venv(root, Path("/usr/bin/python3"), ipykernel=False)
    message = unavailable(SandboxConfig(root=root / "w", python=python))
    assert "ipykernel is missing" in message


def test_user_namespaces_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.access(PYTHON, os.X_OK):
        pytest.skip("needs the sandbox venv (scripts/build-sandbox)")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    bin_dir.chmod(0o755)
    fake = bin_dir / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the"
        " kernel does not allow non-privileged user namespaces' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    message = unavailable(SandboxConfig(root=root / "w", python=PYTHON))
    assert "cannot create its namespaces" in message
    assert "unprivileged user namespaces" in message


def test_unreachable_root_is_refused(root: Path) -> None:
    if os.geteuid() != 0 or not os.access(PYTHON, os.X_OK):
        pytest.skip("needs root and the sandbox venv")
    private = root / "private"
    private.mkdir(mode=0o700)
    message = unavailable(SandboxConfig(root=private / "sandboxes", python=PYTHON))
    assert "not reachable by the sandbox uid" in message and "chmod o+x" in message
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_root_uid_is_refused(root: Path) -> None:
    if os.geteuid() != 0 or not os.access(PYTHON, os.X_OK):
        pytest.skip("needs root and the sandbox venv")
    message = unavailable(SandboxConfig(root=root / "w", python=PYTHON, uid=0))
    assert "unprivileged" in message


async def test_execute_raises_instead_of_running_unsandboxed(root: Path) -> None:
    pool = SandboxPool(SandboxConfig(root=root / "w", python=root / "missing"))
    with pytest.raises(SandboxUnavailable):
        await pool.start()
    with pytest.raises(SandboxUnavailable) as caught:
        await pool.execute("thread", "print('never runs')")
    assert "build-sandbox" in str(caught.value)
    await pool.close()


@pytest.mark.parametrize(
    "key", ["../etc", "a/b", ".spare-1", ".", "..", "", "x" * 300, "thread\0id", "tëst"]
)
def test_folder_names_are_path_safe(key: str) -> None:
    name = dirname_for(key)
    assert name and "/" not in name and "\0" not in name
    assert not name.startswith(".") and len(name) <= 100
    assert name == Path(name).name


def test_folder_names_are_distinct_and_stable() -> None:
    keys = ["thread_abc", "thread/abc", "thread\\abc", "thread abc", "THREAD_ABC"]
    names = [dirname_for(key) for key in keys]
    assert len(set(names)) == len(keys)
    assert dirname_for("thread_abc") == "thread_abc"
    assert [dirname_for(key) for key in keys] == names


def test_stale_kernel_folders_are_swept() -> None:
    old = time.time() - 3600
    stale = Path(tempfile.mkdtemp(prefix="sa-kernel-"))
    live = Path(tempfile.mkdtemp(prefix="sa-kernel-"))
    young = Path(tempfile.mkdtemp(prefix="sa-kernel-"))
    for path in (stale, live):
        os.utime(path, (old, old))
    holder = subprocess.Popen(  # stands in for bubblewrap, whose command line names its folder
        [sys.executable, "-c", "import time; time.sleep(30)", f"{live}/k"]
    )
    try:
        deadline = time.monotonic() + 5
        while not Path(f"/proc/{holder.pid}/cmdline").read_bytes():  # until it has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sweep_stale_rundirs() >= 1
        assert not stale.exists()
        assert live.exists() and young.exists()
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(young, ignore_errors=True)
