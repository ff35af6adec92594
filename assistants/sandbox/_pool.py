"""SandboxPool: one sandboxed kernel per key (engine thread), bounded, with a warm spare.

Capacity: at most `max_kernels` live kernels, the warm spare included. A key without a
kernel takes the spare if one is ready (its folder is renamed to the key's, see
`_workdir.adopt`), else starts one if there is room, else evicts the least recently used idle
kernel (its variables are lost, its files stay), else waits for a kernel to become free —
at most the execution timeout plus 15 s, then it answers "SandboxBusy" as an `Execution`.
Evicting idle kernels first keeps every active thread served; waiting only happens when
every kernel is running code at that moment.

Executions of one key are serialised by a per-key lock; different keys run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import zmq.asyncio

from assistants.sandbox._config import Execution, SandboxConfig
from assistants.sandbox._errors import SandboxUnavailable
from assistants.sandbox._kernel import KILL_GRACE, Kernel, KernelStartError, Launch, RunOutcome
from assistants.sandbox._preflight import Runtime, preflight
from assistants.sandbox._processes import sweep_stale_rundirs
from assistants.sandbox._workdir import (
    Scan,
    adopt,
    chown_tree,
    dirname_for,
    read_file,
    remove,
    scan,
    write_file,
)

__all__ = ["SandboxPool"]

log = logging.getLogger("assistants.sandbox")

_MB = 1024 * 1024
_MAX_MESSAGE = 128 * _MB
_BUSY_SLACK = 15.0
_SPARE_RETRY = 30.0
_RECHECK = 60.0


class SandboxPool:
    """Kernels for keys; see the module docstring for capacity and eviction.

    Usage::

        pool = SandboxPool(SandboxConfig(root=data_dir / "sandboxes", python=venv_python))
        pool.check()                      # SandboxUnavailable: report the tool unavailable
        await pool.start()                # warms the spare in the background
        run = await pool.execute(thread_id, "x = 41")
        run = await pool.execute(thread_id, "x + 1")   # run.result == "42"
        await pool.reap_idle()            # from a scheduled job
        await pool.discard(thread_id)     # the thread was deleted
        await pool.close()
    """

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._runtime: Runtime | None = None
        self._unavailable: SandboxUnavailable | None = None
        self._recheck_at = 0.0
        self._kernels: dict[str, Kernel] = {}
        self._spare: Kernel | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self._spare_retry_at = 0.0
        self._starting = 0  # kernels being started or attached to a key (they hold a slot)
        self._reserved_uids: set[int] = set()
        self._cond = asyncio.Condition()
        self._locks: dict[str, _KeyLock] = {}
        self._context: zmq.asyncio.Context | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ checks and lifetime
    def check(self) -> None:
        """Raise SandboxUnavailable (why, and how to fix it) unless kernels can start here.

        The first call probes bubblewrap for real (~50 ms). Success is cached for good; a
        failure for `_RECHECK` seconds, so running scripts/build-sandbox needs no restart.
        """
        self._checked()

    def _checked(self) -> Runtime:
        if self._runtime is not None:
            return self._runtime
        if self._unavailable is not None and time.monotonic() < self._recheck_at:
            raise self._unavailable
        try:
            self._runtime = preflight(self._config)
        except SandboxUnavailable as exc:
            self._unavailable, self._recheck_at = exc, time.monotonic() + _RECHECK
            raise
        self._unavailable = None
        return self._runtime

    async def _checked_async(self) -> Runtime:
        if self._closed:
            raise SandboxUnavailable("the sandbox pool is closed")
        if self._runtime is not None:
            return self._runtime
        return await asyncio.to_thread(self._checked)

    async def start(self) -> None:
        """Check, sweep what crashed hosts left in the temp folder, then start the warm spare
        in the background (returns without waiting for it)."""
        await self._checked_async()
        swept = await asyncio.to_thread(sweep_stale_rundirs)
        if swept:
            log.info("sandbox: removed %d stale kernel folders", swept)
        self._ensure_spare()

    async def close(self) -> None:
        """Kill every kernel (the spare too), delete socket and spare folders."""
        self._closed = True
        if self._spare_task is not None and not self._spare_task.done():
            self._spare_task.cancel()
            await asyncio.gather(self._spare_task, return_exceptions=True)
        async with self._cond:
            kernels = list(self._kernels.values())
            self._kernels.clear()
            spare, self._spare = self._spare, None
            self._cond.notify_all()
        for kernel in kernels:
            kernel.terminate()  # running executions notice within a poll and return
        if spare is not None:
            await self._close_spare(spare)
        try:  # let them return before their sockets close under them
            async with asyncio.timeout(5), self._cond:
                await self._cond.wait_for(lambda: not any(kernel.busy for kernel in kernels))
        except TimeoutError:
            log.warning("sandbox: executions still running at close")
        await asyncio.gather(*(kernel.close() for kernel in kernels), *self._retiring)
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    # ------------------------------------------------------------------ folders
    def workdir(self, key: str) -> Path:
        """The host folder mounted at /mnt/data for `key` (created if missing)."""
        path = self._workdir_path(key)
        self._config.root.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def _workdir_path(self, key: str) -> Path:
        return self._config.root / dirname_for(key)

    def put_file(self, key: str, name: str, data: bytes) -> Path:
        """Write a file into the key's folder without following links the code planted.

        The host (often root) must never open a path in a working folder by name: code in
        the sandbox can replace any entry with a symlink to a host file at any time.
        """
        root = self.workdir(key)
        info = root.stat()
        return write_file(root, name, data, owner=(info.st_uid, info.st_gid))

    def read_file(self, key: str, path: Path | str, *, limit: int | None = None) -> bytes:
        """Read a file of the key's folder (e.g. from `Execution.files`) without following
        links. OSError for anything but a regular file or one over `limit` bytes (never
        truncated), ValueError for a path outside the folder."""
        root = self._workdir_path(key)
        rel = Path(path).relative_to(root) if Path(path).is_absolute() else Path(path)
        return read_file(root, rel.as_posix(), limit=limit)

    # ------------------------------------------------------------------ execution
    async def execute(
        self,
        key: str,
        code: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (part of the API: a per-call limit)
    ) -> Execution:
        """Run `code` in the key's kernel; everything the code does comes back as an Execution.

        Raises SandboxUnavailable only when no kernel can be started at all.
        """
        limit = self._config.exec_timeout if timeout is None else timeout
        # The key's turn is taken first, in call order: the check below can take longer for
        # one call than for a later one, which then ran first (code that needs the earlier
        # call's variables failed).
        async with self._serialised(key):
            await self._checked_async()
            kernel = await self._acquire(key, limit)
            if kernel is None:
                return Execution(
                    error=(
                        f"SandboxBusy: all {self._config.max_kernels} sandboxes are running "
                        "code; try again in a moment"
                    )
                )
            try:
                return await self._run(kernel, code, limit)
            finally:
                await self._release(kernel)

    async def _acquire(self, key: str, limit: float) -> Kernel | None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit + KILL_GRACE + _BUSY_SLACK
        spare: Kernel | None
        async with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("the sandbox pool is closed")
                kernel = self._kernels.get(key)
                if kernel is not None and kernel.alive():
                    kernel.busy = True
                    return kernel
                if kernel is not None:  # died while idle
                    del self._kernels[key]
                    self._retire(kernel)
                if self._spare is not None:
                    spare, self._spare = self._spare, None
                    spare.busy = True
                    self._starting += 1
                    break
                if self._live() < self._config.max_kernels:
                    spare = None
                    self._starting += 1
                    break
                victim = self._least_recently_used_idle()
                if victim is not None and victim.key is not None:
                    log.info("sandbox: evicting the idle kernel of %s", victim.key)
                    del self._kernels[victim.key]
                    self._retire(victim)
                    continue
                remaining = give_up - loop.time()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._cond.wait(), remaining)
                except TimeoutError:
                    return None
        try:
            kernel = await self._attach(key, spare)
        except BaseException:
            async with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        async with self._cond:
            self._starting -= 1
            kernel.key, kernel.busy = key, True
            self._kernels[key] = kernel
            if self._closed:
                kernel.terminate()
        self._ensure_spare()
        return kernel

    async def _attach(self, key: str, spare: Kernel | None) -> Kernel:
        """Hand the spare to `key`, or start a kernel on the key's folder."""
        if spare is not None:
            try:
                await asyncio.to_thread(self._adopt, spare, key)
                return spare
            except OSError:
                log.warning("sandbox: could not hand the spare to %s", key, exc_info=True)
                await self._close_spare(spare)
        workdir = await asyncio.to_thread(self.workdir, key)
        return await self._start_kernel(workdir)

    def _adopt(self, spare: Kernel, key: str) -> None:
        target = self._workdir_path(key)
        adopt(spare.workdir, target)
        spare.workdir = target
        runtime = self._checked()
        if runtime.identity.switch:
            chown_tree(target, spare.uid, runtime.identity.gid)

    async def _start_kernel(self, workdir: Path) -> Kernel:
        runtime = await self._checked_async()
        identity = runtime.identity
        taken = {k.uid for k in self._all_kernels()} | self._reserved_uids
        uid = await asyncio.to_thread(identity.allocate, taken)
        self._reserved_uids.add(uid)
        try:
            nproc = await asyncio.to_thread(
                identity.nproc, uid, self._config.max_processes, self._config.max_kernels
            )
            if identity.switch:
                await asyncio.to_thread(chown_tree, workdir, uid, identity.gid)
            launch = Launch(
                config=self._config,
                bwrap=runtime.bwrap,
                prlimit=runtime.prlimit,
                uid=uid,
                gid=identity.gid,
                switch_user=identity.switch,
                nproc=nproc,
            )
            if self._context is None:
                self._context = zmq.asyncio.Context()
                # a message bigger than this from a kernel drops its connection instead of
                # being read into the host's memory
                self._context.setsockopt(zmq.MAXMSGSIZE, _MAX_MESSAGE)
            return await Kernel.start(launch, workdir=workdir, context=self._context)
        except KernelStartError as exc:
            raise SandboxUnavailable(f"the sandbox kernel did not start: {exc}") from exc
        finally:
            self._reserved_uids.discard(uid)

    async def _run(self, kernel: Kernel, code: str, limit: float) -> Execution:
        workdir = kernel.workdir
        quota = self._config.disk_quota_mb * _MB
        before = await asyncio.to_thread(scan, workdir, clean=True)

        async def over_quota() -> bool:
            return (await asyncio.to_thread(scan, workdir)).usage > quota

        kernel.thaw()
        try:
            outcome = await kernel.run(code, limit=limit, over_quota=over_quota)
        finally:
            kernel.freeze()
        after = await asyncio.to_thread(scan, workdir, clean=True)
        changed = after.changed_since(before)
        stderr = outcome.output.text("stderr")
        if after.removed:
            stderr += (
                f"[sandbox] removed {', '.join(after.removed[:10])}: only regular files and "
                "folders are kept in /mnt/data\n"
            )
        error = _describe(outcome, limit)
        if outcome.over_quota or after.usage > quota:
            await asyncio.to_thread(remove, workdir, changed + after.new_dirs_since(before))
            error = _quota_error(self._config.disk_quota_mb, changed, after, outcome)
            changed = []
        return Execution(
            stdout=outcome.output.text("stdout"),
            stderr=stderr,
            result=outcome.output.result,
            error=error,
            images=outcome.output.images,
            files=[workdir / rel for rel in changed],
            timed_out=outcome.timed_out,
            restarted=outcome.died,
        )

    async def _release(self, kernel: Kernel) -> None:
        async with self._cond:
            kernel.busy = False
            kernel.last_used = time.monotonic()
            dead = not kernel.alive()
            if dead and kernel.key is not None and self._kernels.get(kernel.key) is kernel:
                del self._kernels[kernel.key]
            self._cond.notify_all()
        if dead:
            await kernel.close()
        self._ensure_spare()

    # ------------------------------------------------------------------ reaping
    async def reap_idle(self) -> int:
        """Kill kernels idle for more than `idle_seconds` (and dead ones); returns how many."""
        now = time.monotonic()
        async with self._cond:
            victims = [
                kernel
                for kernel in self._kernels.values()
                if not kernel.busy
                and (now - kernel.last_used > self._config.idle_seconds or not kernel.alive())
            ]
            for kernel in victims:
                assert kernel.key is not None
                del self._kernels[kernel.key]
            self._cond.notify_all()
        await asyncio.gather(*(kernel.close() for kernel in victims))
        self._ensure_spare()
        return len(victims)

    async def discard(self, key: str) -> None:
        """Kill the key's kernel (a running execution returns restarted) and delete its folder."""
        async with self._cond:
            kernel = self._kernels.pop(key, None)
            self._cond.notify_all()
        if kernel is not None:
            if kernel.busy:
                kernel.terminate()  # the execution's own release closes it
            else:
                await kernel.close()
        async with self._serialised(key):  # after a running execution has finished up
            await asyncio.to_thread(shutil.rmtree, self._workdir_path(key), True)
        self._ensure_spare()

    @asynccontextmanager
    async def _serialised(self, key: str) -> AsyncIterator[None]:
        """One execution (or discard) per key at a time; the lock lives while anyone uses it."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    # ------------------------------------------------------------------ spare
    def _ensure_spare(self) -> None:
        if (
            not self._config.warm_spare
            or self._closed
            or self._runtime is None
            or self._spare is not None
            or (self._spare_task is not None and not self._spare_task.done())
            or self._live() >= self._config.max_kernels
            or time.monotonic() < self._spare_retry_at
        ):
            return
        self._spare_task = asyncio.create_task(self._make_spare(), name="sandbox-warm-spare")

    async def _make_spare(self) -> None:
        folder = self._config.root / f".spare-{secrets.token_hex(8)}"
        kernel: Kernel | None = None
        try:
            await asyncio.to_thread(folder.mkdir, 0o700)
            kernel = await self._start_kernel(folder)
            await kernel.warm_up()
            kernel.freeze()
        except (SandboxUnavailable, KernelStartError, OSError) as exc:
            log.warning("sandbox: the warm spare did not start: %s", exc)
            self._spare_retry_at = time.monotonic() + _SPARE_RETRY
            if kernel is not None:
                await kernel.close()
            await asyncio.to_thread(shutil.rmtree, folder, True)
            return
        except BaseException:  # cancelled by close()
            if kernel is not None:
                kernel.terminate()
                await kernel.close()
            await asyncio.to_thread(shutil.rmtree, folder, True)
            raise
        async with self._cond:
            if self._closed:
                closing: Kernel | None = kernel
            else:
                self._spare, closing = kernel, None
            self._cond.notify_all()
        if closing is not None:
            await self._close_spare(closing)

    async def _close_spare(self, kernel: Kernel) -> None:
        await kernel.close()
        if kernel.key is None:
            await asyncio.to_thread(shutil.rmtree, kernel.workdir, True)

    # ------------------------------------------------------------------ bookkeeping
    def _all_kernels(self) -> list[Kernel]:
        return [*self._kernels.values(), *([self._spare] if self._spare else [])]

    def _live(self) -> int:
        starting_spare = self._spare_task is not None and not self._spare_task.done()
        return len(self._kernels) + (self._spare is not None) + starting_spare + self._starting

    def _least_recently_used_idle(self) -> Kernel | None:
        idle = [kernel for kernel in self._kernels.values() if not kernel.busy]
        return min(idle, key=lambda kernel: kernel.last_used, default=None)

    def _retire(self, kernel: Kernel) -> None:
        """Kill a kernel nobody uses now; its sockets and folder are cleaned in the background."""
        kernel.terminate()
        task = asyncio.get_running_loop().create_task(kernel.close(), name="sandbox-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _describe(outcome: RunOutcome, limit: float) -> str | None:
    """The error text: the code's own, or what the sandbox had to do to it."""
    raised = outcome.output.error
    if outcome.timed_out and outcome.interrupt_ignored:
        text = (
            f"TimeoutError: execution exceeded {limit:g} s and ignored the interrupt, so the "
            "sandbox was restarted; all variables were lost"
        )
    elif outcome.timed_out:
        text = f"TimeoutError: execution exceeded {limit:g} s and was interrupted; variables kept"
    elif outcome.strays_survived:
        text = (
            "SandboxRestarted: the processes the code started could not be cleaned up (they "
            "would not stop, or left the kernel unresponsive), so the sandbox was restarted; "
            "all variables were lost"
        )
    elif outcome.died and not outcome.over_quota:
        text = (
            "KernelDied: the sandbox stopped during execution (killed, crashed or out of "
            "memory); all variables were lost and the next call starts a fresh kernel"
        )
    else:
        return raised
    return f"{text}\n{raised}" if raised else text


def _quota_error(quota_mb: int, changed: list[str], after: Scan, outcome: RunOutcome) -> str:
    removed = ", ".join(changed[:10]) + (" …" if len(changed) > 10 else "")
    text = (
        f"DiskQuotaExceeded: /mnt/data grew past its {quota_mb} MB quota "
        f"({after.usage // _MB} MB); the files this execution created or changed were removed"
        + (f": {removed}" if removed else "")
    )
    if outcome.over_quota and outcome.died:
        text += "; the sandbox had to be restarted, all variables were lost"
    elif outcome.over_quota:
        text += "; the execution was interrupted"
    return text
