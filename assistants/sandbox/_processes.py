"""Processes seen from the host through procfs: a sandbox's children, its pid namespace, and
the socket folders that crashed hosts left behind."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["RUNDIR_PREFIX", "children", "namespace_pids", "state", "sweep_stale_rundirs"]

RUNDIR_PREFIX = "sa-kernel-"
_STALE_AFTER = 60.0


def children(pid: int, *, all_tasks: bool = False) -> list[int]:
    """Child pids from procfs (/proc/PID/task/TID/children: per thread, so all threads)."""
    tids = [str(pid)]
    if all_tasks:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except (OSError, ValueError):
            continue
    return found


def state(pid: int) -> str:
    """The one-letter state from /proc/PID/stat ("" when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def namespace_pids(pidns: str | None) -> list[int]:
    """Host pids of every process in the pid namespace `pidns` (a /proc/PID/ns/pid link)."""
    if pidns is None:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == pidns:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def sweep_stale_rundirs() -> int:
    """Delete socket folders of sandboxes that no longer run (a host process killed with -9
    leaves them behind; its sandboxes died with it, by --die-with-parent). A folder is in use
    while some process's command line names it, as bubblewrap's does; young folders are left
    alone, their sandbox may be starting in another process."""
    now = time.time()
    candidates = []
    for path in Path(tempfile.gettempdir()).glob(f"{RUNDIR_PREFIX}*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            if now - info.st_mtime > _STALE_AFTER:
                candidates.append(path)
    if not candidates:
        return 0
    in_use = b"\0".join(_command_lines())
    stale = [path for path in candidates if str(path).encode() + b"/" not in in_use]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def _command_lines() -> list[bytes]:
    lines = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    lines.append(handle.read())
            except OSError:
                continue
    return lines
