"""Who the kernels run as: an unprivileged uid per kernel, never root.

RLIMIT_NPROC is counted per host uid (threads included; an idle kernel already has 11), so
kernels sharing one uid share one budget and a fork bomb in one starves the others. When the
process is root, each kernel therefore gets its own uid from the subordinate range that
scripts/build-sandbox reserves for the user `sandbox` in /etc/subuid; every kernel shares the
user's group. Without such a range all kernels share the one uid and NPROC becomes a shared
budget. When the process is not root, the kernels run as the process's own uid (bubblewrap
maps it inside its user namespace) and NPROC has to leave room for the user's other tasks.
"""

from __future__ import annotations

import os
import pwd
import random
from dataclasses import dataclass
from pathlib import Path

from assistants.sandbox._errors import SandboxUnavailable

__all__ = ["Identity", "resolve_identity", "tasks_of_uid", "uids_in_use"]

_USER = "sandbox"
_SUBUID = Path("/etc/subuid")
_MAX_RANGE = 65536


@dataclass(frozen=True)
class Identity:
    """The uids kernels may run as and whether the process must switch to them."""

    switch: bool  # root: Popen(user=, group=, extra_groups=[]) before bubblewrap
    gid: int
    uids: range  # one uid per kernel when longer than 1

    @property
    def shared(self) -> bool:
        return len(self.uids) == 1

    def allocate(self, taken: set[int]) -> int:
        """A uid no live kernel of ours and no running process uses (when we can tell)."""
        if self.shared:
            return self.uids[0]
        busy = taken | uids_in_use()
        for _ in range(64):
            uid = random.choice(self.uids)
            if uid not in busy:
                return uid
        free = (uid for uid in self.uids if uid not in busy)
        return next(free, random.choice(self.uids))

    def nproc(self, uid: int, per_kernel: int, kernels: int) -> int:
        """RLIMIT_NPROC for a kernel running as `uid`."""
        if not self.switch:  # the user's other tasks count against the same limit
            return tasks_of_uid(uid) + per_kernel
        if self.shared:
            return per_kernel * (kernels + 1)
        return per_kernel


def resolve_identity(uid: int | None) -> Identity:
    """Find the sandbox uid(s); raises SandboxUnavailable with the fix when missing."""
    if os.geteuid() != 0:
        return Identity(switch=False, gid=os.getgid(), uids=range(os.getuid(), os.getuid() + 1))
    name: str | None
    if uid is None:
        try:
            entry = pwd.getpwnam(_USER)
        except KeyError:
            raise SandboxUnavailable(
                f"user '{_USER}' does not exist: run scripts/build-sandbox as root to create it"
            ) from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    else:
        try:
            entry = pwd.getpwuid(uid)
            gid, name = entry.pw_gid, entry.pw_name
        except KeyError:
            gid, name = uid, None
    if uid == 0 or gid == 0:
        raise SandboxUnavailable(
            "the sandbox uid/gid is 0: kernels must run as an unprivileged user "
            "(run scripts/build-sandbox, or set SandboxConfig.uid to an unprivileged uid)"
        )
    sub = _subordinate_range(name, uid)
    return Identity(switch=True, gid=gid, uids=sub or range(uid, uid + 1))


def _subordinate_range(name: str | None, uid: int) -> range | None:
    try:
        lines = _SUBUID.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        owner, _, rest = line.strip().partition(":")
        start, _, count = rest.partition(":")
        if owner not in {name, str(uid)} or not (start.isdigit() and count.isdigit()):
            continue
        first, size = int(start), min(int(count), _MAX_RANGE)
        if first > 0 and size > 0:
            return range(first, first + size)
    return None


def uids_in_use() -> set[int]:
    """Owners of the running processes (one stat per process)."""
    owners: set[int] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                owners.add(entry.stat(follow_symlinks=False).st_uid)
            except OSError:  # exited meanwhile
                pass
    return owners


def tasks_of_uid(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) whose real uid is `uid`."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total
