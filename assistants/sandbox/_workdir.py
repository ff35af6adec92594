"""Working folders on the host: names, change tracking, the disk quota, safe file access.

A key's folder is mounted read-write at /mnt/data, and the host reads and writes it as a more
privileged user while code in the sandbox may still be running (threads, background
processes). So the host side never follows a link the sandbox made: scans use lstat, file
access walks folder descriptors with O_NOFOLLOW (`read_file`, `write_file`, `remove`), and
after every execution symlinks, FIFOs, sockets and device nodes are deleted, leaving only
regular files and folders.

Disk quota: usage is the sum of file sizes plus 4 KiB per file or folder (so a flood of
empty files counts too). It is polled while code runs (the execution is interrupted when over)
and measured after; when over, every file the execution created or modified is removed, then
the folders it created, and the execution reports the error. Files from earlier executions
and files the host put there are kept.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Scan",
    "adopt",
    "chown_tree",
    "dirname_for",
    "read_file",
    "remove",
    "scan",
    "write_file",
]

ENTRY_BYTES = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def dirname_for(key: str) -> str:
    """A folder name for a key: the key itself when already safe, else a readable part + hash.

    Never starts with "." (the pool keeps its spare folders as .spare-*), never "" or "..".
    """
    safe = _UNSAFE.sub("_", key)[:64]
    if key and safe == key and not key.startswith("."):
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{safe.lstrip('.')}-{digest}" if safe.lstrip(".") else f"k-{digest}"


@dataclass
class Scan:
    """Regular files (relative path -> identity), folders, usage, and what was deleted."""

    files: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # ino, size, mtime
    dirs: set[str] = field(default_factory=set)
    usage: int = 0
    removed: list[str] = field(default_factory=list)

    def changed_since(self, before: Scan) -> list[str]:
        return sorted(rel for rel, ident in self.files.items() if before.files.get(rel) != ident)

    def new_dirs_since(self, before: Scan) -> list[str]:
        return sorted(self.dirs - before.dirs, key=lambda rel: rel.count("/"), reverse=True)


def scan(root: Path, *, clean: bool = False) -> Scan:
    """Walk `root` without following links; with `clean`, delete every non-regular entry."""
    result = Scan()
    if not root.is_dir():
        return result
    for folder, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder + "/"
        for name in dirnames:
            result.dirs.add(prefix + name)
            result.usage += ENTRY_BYTES
        for name in filenames:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:  # gone meanwhile, or unreadable (not root)
                continue
            if stat.S_ISREG(info.st_mode):
                result.files[prefix + name] = (info.st_ino, info.st_size, info.st_mtime_ns)
                result.usage += info.st_size + ENTRY_BYTES
            elif clean:
                _unlink_quietly(name, dir_fd)
                result.removed.append(prefix + name)
            else:
                result.usage += ENTRY_BYTES
    # fwalk lists a symlink to a folder among dirnames without descending; treat it as a link
    for rel in [rel for rel in result.dirs if _is_link(root, rel)]:
        result.dirs.discard(rel)
        if clean:
            remove(root, [rel])
            result.removed.append(rel)
    return result


def _is_link(root: Path, rel: str) -> bool:
    try:
        with _parent_fd(root, rel) as (fd, name):
            return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


@contextmanager
def _parent_fd(root: Path, rel: str) -> Iterator[tuple[int, str]]:
    """An fd of the folder holding `rel`, reached without following any link."""
    parts = [part for part in rel.split("/") if part not in {"", "."}]
    if not parts or ".." in parts:
        raise ValueError(f"not a path inside the working folder: {rel!r}")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        yield fd, parts[-1]
    finally:
        os.close(fd)


def remove(root: Path, rels: list[str]) -> None:
    """Delete files, links and (empty) folders by relative path, never through a link."""
    for rel in rels:
        try:
            with _parent_fd(root, rel) as (fd, name):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
        except (OSError, ValueError):
            continue


def read_file(root: Path, rel: str, *, limit: int | None = None) -> bytes:
    """Read a regular file of the working folder; refuses links anywhere on the way, and
    files over `limit` bytes (never a silently truncated copy)."""
    with _parent_fd(root, rel) as (dir_fd, name):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not hang
        fd = os.open(name, flags, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {rel}")
        if limit is not None and info.st_size > limit:
            raise OSError(errno.EFBIG, f"{rel} is larger than {limit} bytes")
        data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:  # grew while being read
            raise OSError(errno.EFBIG, f"{rel} is larger than {limit} bytes")
        return data


def write_file(root: Path, rel: str, data: bytes, *, owner: tuple[int, int] | None) -> Path:
    """Create or replace a file (missing folders are created), never through a link."""
    parts = [part for part in rel.split("/") if part not in {"", "."}]
    if not parts or ".." in parts:
        raise ValueError(f"not a path inside the working folder: {rel!r}")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                if owner:
                    os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        name = parts[-1]
        try:  # replace whatever is there (a link is removed, not followed)
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise IsADirectoryError(rel)
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, 0o644, dir_fd=fd)
        with os.fdopen(out, "wb") as handle:
            handle.write(data)
            if owner:
                os.fchown(handle.fileno(), *owner)
    finally:
        os.close(fd)
    return root.joinpath(*parts)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand the folder to a kernel's uid (kernels of the same key may get different uids)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for _folder, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def adopt(spare: Path, workdir: Path) -> None:
    """Make the spare kernel's (already mounted) folder become `workdir`.

    The mount inside the sandbox follows the folder, not its name, so renaming the spare
    folder to the key's name hands the running kernel the key's folder. Whatever the key's
    folder already holds (files the host put there) is moved in first.
    """
    if not (workdir.is_dir() and not workdir.is_symlink()):
        os.rename(spare, workdir)
        return
    src = os.open(workdir, _DIR_FLAGS)
    dst = os.open(spare, _DIR_FLAGS)
    moved: list[str] = []
    try:
        for name in os.listdir(src):
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
            moved.append(name)
        os.rmdir(workdir)
        os.rename(spare, workdir)
    except OSError:
        for name in moved:  # put the key's files back before the spare folder is dropped
            try:
                os.rename(name, name, src_dir_fd=dst, dst_dir_fd=src)
            except OSError:
                continue
        raise
    finally:
        os.close(src)
        os.close(dst)
