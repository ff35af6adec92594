"""One sandboxed ipykernel: start it inside bubblewrap, run code in it, interrupt, kill.

The kernel talks ZMQ over Unix sockets in a per-kernel folder (`{rundir}/k`, mounted at
/run/kernel), driven by jupyter_client's AsyncKernelClient, so nothing here blocks the event
loop except short syscalls; process start, waits and folder walks run in threads.

A timed-out execution is interrupted through the Jupyter control channel (`interrupt_request`:
the kernel raises KeyboardInterrupt, variables survive, no signal permission needed); if the
kernel is not idle `KILL_GRACE` seconds later, the sandbox's pid 1 is SIGKILLed, which takes
the whole pid namespace with it. Processes the code leaves behind (fork bombs, background
jobs) are killed after every execution; only the kernel outlives it, and it is stopped
(SIGSTOP) until the next execution.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from assistants.sandbox._command import (
    CONNECTION_FILE,
    KERNEL_DIR,
    connection_info,
    launch_command,
    launch_env,
    new_key,
)
from assistants.sandbox._config import SandboxConfig
from assistants.sandbox._output import Output
from assistants.sandbox._processes import RUNDIR_PREFIX, children, namespace_pids, state

__all__ = ["KILL_GRACE", "Kernel", "KernelStartError", "RunOutcome"]

log = logging.getLogger("assistants.sandbox")

KILL_GRACE = 2.0
START_TIMEOUT = 60.0
_POLL = 0.25
# what a message from the (untrusted) kernel can make jupyter_client or us raise
_UNTRUSTED = (ValueError, KeyError, TypeError, AttributeError, zmq.ZMQError)
_QUOTA_POLL = 0.1
_REAP_LIMIT = 1.0  # the reaping cell takes milliseconds; longer means the kernel is wedged
_LOG_TAIL = 2000
# Pre-imported in the warm spare so a key's first `import pandas` costs nothing; the names
# are deleted again so every key starts from an empty namespace.
WARMUP = "import numpy, pandas, matplotlib.pyplot\ndel numpy, pandas, matplotlib\n"
_REAP = """
import os as _sandbox_os
try:
    while _sandbox_os.waitpid(-1, _sandbox_os.WNOHANG)[0]:
        pass
except ChildProcessError:
    pass
del _sandbox_os
"""


class KernelStartError(Exception):
    """The sandbox or the kernel in it did not come up; the text carries its log tail."""


@dataclass
class RunOutcome:
    output: Output
    timed_out: bool = False
    over_quota: bool = False
    died: bool = False  # the kernel exited or had to be killed: state lost
    interrupt_ignored: bool = False
    strays_survived: bool = False  # the code's processes could not be cleaned up


@dataclass(frozen=True)
class Launch:
    """What `Kernel.start` needs from the pool."""

    config: SandboxConfig
    bwrap: str
    prlimit: str
    uid: int
    gid: int
    switch_user: bool
    nproc: int


class Kernel:
    """A running sandbox with its client; owned by the pool, used by one caller at a time."""

    def __init__(
        self,
        *,
        launch: Launch,
        proc: subprocess.Popen[bytes],
        client: AsyncKernelClient,
        rundir: Path,
        workdir: Path,
    ) -> None:
        self.launch = launch
        self.uid = launch.uid
        self.proc = proc
        self.client = client
        self.rundir = rundir
        self.workdir = workdir
        self.key: str | None = None
        self.busy = False
        self.last_used = time.monotonic()
        self._init_pid: int | None = None
        self._kernel_pid: int | None = None
        self._pidns: str | None = None
        self._closed = False
        self._terminated = False

    # ------------------------------------------------------------------ start
    @classmethod
    async def start(cls, launch: Launch, *, workdir: Path, context: zmq.asyncio.Context) -> Kernel:
        """Spawn bubblewrap + ipykernel and wait until it answers kernel_info on both channels."""
        spawning = asyncio.ensure_future(asyncio.to_thread(_spawn, launch, workdir))
        try:
            rundir, key, proc = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            spawning.add_done_callback(_discard_spawned)  # the thread still starts it
            raise
        client = AsyncKernelClient(context=context)
        client.load_connection_info(connection_info(str(rundir / "k"), key))  # type: ignore[arg-type]
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        kernel = cls(launch=launch, proc=proc, client=client, rundir=rundir, workdir=workdir)
        try:
            await kernel._wait_ready(START_TIMEOUT)
            kernel._find_pids()
            if launch.switch_user:
                _lock_sockets(rundir / "k")
        except BaseException:
            await kernel.close()
            raise
        return kernel

    async def _wait_ready(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            self._raise_if_exited()
            msg_id = self.client.kernel_info()
            if not await self._reply(msg_id, 1.0):
                continue
            # iopub is a SUB socket: wait until it carries this request's status, so no output
            # of the first execution is lost to the subscription's slow start
            end = loop.time() + 0.5
            while loop.time() < end:
                try:
                    msg = await self.client.get_iopub_msg(timeout=end - loop.time())
                except queue.Empty:
                    break
                except _UNTRUSTED:
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    return
        self._raise_if_exited()
        raise KernelStartError(f"the kernel did not answer within {seconds:.0f} s{self._log()}")

    def _raise_if_exited(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise KernelStartError(f"the sandbox exited with status {code}{self._log()}")

    def _log(self) -> str:
        try:
            with open(self.rundir / "log", "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - _LOG_TAIL))
                tail = handle.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return f": {tail}" if tail else ""

    def _find_pids(self) -> None:
        """The sandbox's pid 1 (bubblewrap's reaper) and the kernel, as host pids."""
        init = children(self.proc.pid)
        self._init_pid = init[0] if init else None
        kernel = children(self._init_pid) if self._init_pid else []
        self._kernel_pid = kernel[0] if kernel else None
        try:
            self._pidns = os.readlink(f"/proc/{self._init_pid}/ns/pid")
        except OSError:
            self._pidns = None

    async def _reply(self, msg_id: str, seconds: float) -> dict[str, Any] | None:
        """The shell reply to `msg_id` (older replies are dropped), or None after `seconds`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                return None
            try:
                msg = await self.client.get_shell_msg(timeout=remaining)
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg
            except queue.Empty:
                return None
            except _UNTRUSTED as exc:
                log.debug("sandbox: dropped a malformed shell message: %r", exc)

    # ------------------------------------------------------------------ run
    def alive(self) -> bool:
        return not self._closed and not self._terminated and self.proc.poll() is None

    async def warm_up(self) -> None:
        outcome = await self.run(WARMUP, limit=START_TIMEOUT, silent=True)
        if outcome.died or outcome.timed_out:
            raise KernelStartError(f"the warm-up failed{self._log()}")

    async def run(
        self,
        code: str,
        *,
        limit: float,
        silent: bool = False,
        over_quota: Callable[[], Awaitable[bool]] | None = None,
        clean: bool = True,
        grace: float = KILL_GRACE,
    ) -> RunOutcome:
        """Execute `code`; on timeout (or quota) interrupt, and kill if that is ignored."""
        out = RunOutcome(Output())
        msg_id = self.client.execute(
            code, silent=silent, store_history=not silent, allow_stdin=False, stop_on_error=True
        )
        try:
            return await self._follow(msg_id, out, limit, over_quota, clean, grace)
        except asyncio.CancelledError:
            # the caller gave up: stop the code too, or the key's next call queues behind it
            if self.alive() and not out.output.idle:
                self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))
            raise

    async def _follow(
        self,
        msg_id: str,
        out: RunOutcome,
        limit: float,
        over_quota: Callable[[], Awaitable[bool]] | None,
        clean: bool,
        grace: float,
    ) -> RunOutcome:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + limit
        next_quota = start + _QUOTA_POLL
        while not out.output.idle:
            if not self.alive():
                out.died = True
                return out
            now = loop.time()
            if now >= deadline:
                out.timed_out = True
                break
            if over_quota is not None and now >= next_quota:
                if await over_quota():
                    out.over_quota = True
                    break
                # poll often (the overshoot is what the code writes meanwhile), but spend at
                # most ~10% of a core walking a big folder
                took = loop.time() - now
                next_quota = loop.time() + max(_QUOTA_POLL, 10 * took)
            wait = min(deadline, next_quota if over_quota else deadline, now + _POLL) - now
            await self._collect(msg_id, out.output, max(wait, 0.001))
        if not out.output.idle and not await self.interrupt(msg_id, out.output, grace):
            out.interrupt_ignored = out.died = True
            await self.close()
            return out
        await self._reply(msg_id, 0.5)
        if clean and not await self._end_strays():
            out.died = out.strays_survived = True
            await self.close()
        return out

    async def _collect(self, msg_id: str, output: Output, seconds: float) -> None:
        try:
            msg = await self.client.get_iopub_msg(timeout=seconds)
            if msg["parent_header"].get("msg_id") == msg_id:
                output.add(msg)
        except queue.Empty:
            return
        except _UNTRUSTED as exc:  # the code in the kernel can send anything; drop it
            log.debug("sandbox: dropped a malformed iopub message: %r", exc)

    async def interrupt(self, msg_id: str, output: Output, grace: float = KILL_GRACE) -> bool:
        """KeyboardInterrupt via the control channel; True when the kernel went idle in time."""
        self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while not output.idle and self.alive() and loop.time() < end:
            await self._collect(msg_id, output, max(min(end - loop.time(), _POLL), 0.001))
        while True:  # drop interrupt_reply messages
            try:
                await self.client.get_control_msg(timeout=0)
            except queue.Empty:
                break
            except _UNTRUSTED:
                continue
        return output.idle

    # ------------------------------------------------------------------ processes
    def strays(self) -> tuple[list[int], bool]:
        """Processes the code left running, and whether the kernel has unreaped children.

        Everything in the sandbox descends from its pid 1: the kernel, the kernel's children
        and orphans re-parented to pid 1. Only the kernel may outlive an execution.
        """
        if self._init_pid is None or self._kernel_pid is None:
            return [], False
        own = children(self._kernel_pid, all_tasks=True)
        orphans = [pid for pid in children(self._init_pid) if pid != self._kernel_pid]
        live = [pid for pid in own + orphans if state(pid) not in {"Z", "X", ""}]
        zombies = any(state(pid) == "Z" for pid in own)
        return live, zombies

    def kill_strays(self) -> bool:
        """SIGKILL every process of the sandbox but its pid 1 and the kernel; True when the
        kernel must reap killed children. A fork bomb's tree is deep and keeps forking, so
        this scans the whole pid namespace, not just children, and repeats until it is empty."""
        keep = {self._init_pid, self._kernel_pid}
        for _ in range(50):
            live = [pid for pid in namespace_pids(self._pidns) if pid not in keep]
            live = [pid for pid in live if state(pid) not in {"Z", "X", ""}]
            if not live:
                break
            for pid in live:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    continue
            time.sleep(0.002)
        return self.strays()[1]

    async def _end_strays(self) -> bool:
        """Processes do not outlive the execution that started them (fork bombs, background
        jobs); zombies count against RLIMIT_NPROC, so the kernel reaps its killed children.

        False when that failed and only a restart helps: strays that would not die, or a
        kernel that no longer answers (forked copies of the kernel that ran on can wreck its
        ZMQ state, which is not fork-safe).
        """
        live, zombies = self.strays()  # a few procfs reads: cheap enough for every execution
        if live:
            zombies = await asyncio.to_thread(self.kill_strays)
            if self.strays()[0]:
                return False
        if zombies and self.alive():
            reaped = await self.run(
                _REAP, limit=_REAP_LIMIT, silent=True, clean=False, grace=_REAP_LIMIT / 2
            )
            return reaped.output.idle and not reaped.died
        return True

    def freeze(self) -> None:
        """SIGSTOP the kernel between executions: threads the code left running can then
        neither burn CPU nor write to /mnt/data (past the quota, or planting links) while the
        host reads the folder."""
        self._signal_kernel(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_kernel(signal.SIGCONT)

    def _signal_kernel(self, signum: int) -> None:
        if self._kernel_pid is not None and self.alive():
            try:
                os.kill(self._kernel_pid, signum)
            except OSError:
                pass

    def terminate(self) -> None:
        """SIGKILL the sandbox now; `close()` still has to release sockets and folders."""
        self._terminated = True
        self._signal_all()

    def _signal_all(self) -> None:
        """SIGKILL the sandbox's pid 1: the kernel kills everything in its pid namespace, and
        bubblewrap's outer process reaps it and exits, so no zombie is left to the host's
        init. Without a known pid 1, kill bubblewrap's process group instead."""
        try:
            if self._init_pid is not None and self.proc.poll() is None:
                os.kill(self._init_pid, signal.SIGKILL)
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass

    async def close(self) -> None:
        """Kill the sandbox, wait until it is gone, delete the socket folder."""
        if self._closed:
            return
        self._closed = True
        self._signal_all()
        try:
            self.client.stop_channels()
        except Exception:  # the sockets may already be gone; keep cleaning up
            log.debug("closing kernel channels failed", exc_info=True)
        await asyncio.to_thread(self._reap)

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("sandbox %s did not exit after SIGKILL", self.proc.pid)
        shutil.rmtree(self.rundir, ignore_errors=True)


def _spawn(launch: Launch, workdir: Path) -> tuple[Path, str, subprocess.Popen[bytes]]:
    """Create the socket folder and connection file, then start prlimit → bubblewrap."""
    rundir = Path(tempfile.mkdtemp(prefix=RUNDIR_PREFIX))
    key = new_key()
    try:
        os.chmod(rundir, 0o711)  # bubblewrap, running as the kernel uid, resolves rundir/k
        kdir = rundir / "k"
        kdir.mkdir()
        conn = kdir / CONNECTION_FILE
        fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(connection_info(KERNEL_DIR, key), handle)
        if launch.switch_user:
            # root-owned and sticky: the kernel can create its sockets, and once they are
            # handed to root (`_lock_sockets`) it cannot swap them for links the host would
            # follow when ZMQ reconnects
            os.chmod(kdir, 0o1733)
            os.chmod(conn, 0o644)
        else:
            os.chmod(kdir, 0o700)
        argv = launch_command(
            launch.config,
            bwrap=launch.bwrap,
            prlimit=launch.prlimit,
            workdir=workdir,
            kernel_dir=kdir,
            nproc=launch.nproc,
        )
        switch = launch.switch_user
        with open(rundir / "log", "wb") as logfile:
            proc = subprocess.Popen(
                argv,
                env=launch_env(),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd="/",
                process_group=0,  # so one killpg reaches bubblewrap and prlimit
                umask=0o022,
                user=launch.uid if switch else None,
                group=launch.gid if switch else None,
                extra_groups=[] if switch else None,
            )
    except BaseException:
        shutil.rmtree(rundir, ignore_errors=True)
        raise
    return rundir, key, proc


def _discard_spawned(spawning: asyncio.Future[tuple[Path, str, subprocess.Popen[bytes]]]) -> None:
    """Kill a sandbox whose start was cancelled; subprocess reaps the process later."""
    if spawning.cancelled() or spawning.exception() is not None:
        return
    rundir, _key, proc = spawning.result()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    shutil.rmtree(rundir, ignore_errors=True)


def _lock_sockets(kdir: Path) -> None:
    for entry in os.scandir(kdir):
        if entry.name.startswith("k-"):
            os.chown(entry.path, 0, 0, follow_symlinks=False)
