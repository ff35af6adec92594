"""Settings of a sandbox pool and the result of one execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Execution", "SandboxConfig"]


@dataclass(frozen=True)
class SandboxConfig:
    """How many kernels, how long, how big.

    root: host folder holding the per-key working folders (DATA_DIR/sandboxes).
    python: the sandbox venv's python, as printed by scripts/build-sandbox. It must come from
        Debian's /usr/bin/python3: only /usr and the venv itself are visible in the sandbox.
    max_kernels: live kernels at most, the warm spare included.
    exec_timeout: wall-clock seconds per execution; then interrupt, then kill.
    idle_seconds: `reap_idle()` kills kernels unused for longer than this.
    memory_mb: RLIMIT_AS. Address space, not memory: a kernel with pandas imported already
        maps ~0.9 GB, so 2048 leaves ~1.1 GB for data.
    max_processes: RLIMIT_NPROC (threads count too) per kernel uid.
    max_file_mb: RLIMIT_FSIZE, the size of any single file.
    disk_quota_mb: per working folder, checked while and after code runs (`_workdir.py`):
        over it, the execution is interrupted and the files it created or changed are removed.
    tmp_mb: size of the kernel's /tmp (memory-backed; /dev/shm is a further 64 MB).
    warm_spare: keep one started kernel ready for the next new key.
    uid: when the process is root, the uid the kernels run as (its subordinate uid range in
        /etc/subuid, if any, gives each kernel its own uid); None looks up the user `sandbox`.
        Ignored when not root: kernels then run as the process's own uid.
    """

    root: Path
    python: Path
    max_kernels: int = 4
    exec_timeout: float = 30.0
    idle_seconds: float = 3600.0
    memory_mb: int = 2048
    max_processes: int = 64
    max_file_mb: int = 256
    disk_quota_mb: int = 512
    tmp_mb: int = 512
    warm_spare: bool = True
    uid: int | None = None


@dataclass(frozen=True)
class Execution:
    """What one `execute()` produced; describes failures instead of raising them.

    result: text/plain of the last expression's value.
    error: "ename: evalue" and a short plain traceback; also set for timeouts, kills and quota
        violations, which the code did not raise itself.
    images: PNG bytes from display_data / execute_result.
    files: host paths of regular files created or modified under the working folder.
    timed_out: the wall-clock limit was hit.
    restarted: the kernel was killed (state lost); the next call gets a fresh kernel.
    """

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    images: list[bytes] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    timed_out: bool = False
    restarted: bool = False
