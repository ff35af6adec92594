"""Pool lifecycle: reaping, discarding, the kernel cap, serialisation, the warm spare, close."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from assistants.sandbox import SandboxPool
from tests.assistants.sandbox.sandbox_support import (
    make_config,
    processes_mentioning,
    wait_for_spare,
)


async def test_reap_idle_kills_idle_kernels_only(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, idle_seconds=0.5))
    try:
        await pool.execute("active", "y = 2")
        await pool.execute("idle", "x = 1")
        await pool.execute("active", "y")
        assert await pool.reap_idle() == 0
        await asyncio.sleep(0.6)
        await pool.execute("active", "y")  # used again: not idle any more
        assert await pool.reap_idle() == 1
        assert processes_mentioning(str(pool.workdir("idle"))) == []
        assert (await pool.execute("active", "y")).result == "2"
        fresh = await pool.execute("idle", "x")  # a new kernel: state is gone, files stay
        assert fresh.error is not None and fresh.error.startswith("NameError")
    finally:
        await pool.close()


async def test_discard_kills_kernel_and_deletes_folder(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root))
    try:
        run = await pool.execute("gone", "open('/mnt/data/a.txt', 'w').write('a')")
        folder = pool.workdir("gone")
        assert run.files == [folder / "a.txt"]
        await pool.discard("gone")
        assert not folder.exists()
        assert processes_mentioning(str(folder)) == []
        again = await pool.execute("gone", "import os\nos.listdir('/mnt/data')")
        assert again.result == "[]"
    finally:
        await pool.close()


async def test_discard_during_execution_returns_restarted(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root))
    try:
        await pool.execute("busy", "import time")
        running = asyncio.create_task(pool.execute("busy", "time.sleep(30)"))
        await asyncio.sleep(0.5)
        await pool.discard("busy")
        run = await asyncio.wait_for(running, 5)
        assert run.restarted and run.error is not None
        assert not pool.workdir("busy").joinpath("anything").exists()
    finally:
        await pool.close()


async def test_full_pool_evicts_least_recently_used_idle_kernel(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, max_kernels=2))
    try:
        await pool.execute("a", "x = 'a'")
        await pool.execute("b", "x = 'b'")
        await pool.execute("a", "x")  # b is now the least recently used
        assert (await pool.execute("c", "x = 'c'")).error is None
        assert (await pool.execute("a", "x")).result == "'a'"
        evicted = await pool.execute("b", "x")
        assert evicted.error is not None and evicted.error.startswith("NameError")
        assert len(processes_mentioning(str(sandbox_root))) <= 2 * 2  # prlimit→bwrap, reaper
    finally:
        await pool.close()


async def test_callers_wait_when_every_kernel_is_busy(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, max_kernels=1))
    try:
        await pool.execute("slow", "import time")
        slow = asyncio.create_task(pool.execute("slow", "time.sleep(1.5); 'slow done'"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        quick = await pool.execute("quick", "'quick done'")
        assert quick.result == "'quick done'"
        assert time.monotonic() - started >= 1.0  # it waited for the slow one to finish
        assert (await slow).result == "'slow done'"
    finally:
        await pool.close()


async def test_busy_pool_answers_sandbox_busy_after_the_bound(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, max_kernels=1))
    try:
        await pool.execute("hog", "import time")
        hog = asyncio.create_task(pool.execute("hog", "time.sleep(2)", timeout=10))
        await asyncio.sleep(0.3)
        pool_module = __import__("assistants.sandbox._pool", fromlist=["_BUSY_SLACK"])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pool_module, "_BUSY_SLACK", 0.0)
            patch.setattr(pool_module, "KILL_GRACE", 0.0)
            busy = await pool.execute("waiting", "1", timeout=0.5)
        assert busy.error is not None and busy.error.startswith("SandboxBusy")
        await hog
    finally:
        await pool.close()


async def test_executions_of_one_key_are_serialised(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root))
    try:
        first = asyncio.create_task(pool.execute("k", "import time\ntime.sleep(0.5)\ny = 1"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(pool.execute("k", "y + 1"))
        assert (await first).error is None
        assert (await second).result == "2"
    finally:
        await pool.close()


async def test_warm_spare_takes_the_keys_existing_files(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, warm_spare=True))
    try:
        await pool.start()
        await wait_for_spare(pool)
        pool.put_file("warm", "input.csv", b"a,b\n1,2\n")
        started = time.monotonic()
        run = await pool.execute("warm", "import pandas as pd\nint(pd.read_csv('input.csv').b[0])")
        assert time.monotonic() - started < 1.0  # pandas was pre-imported by the spare
        assert run.result == "2"
        assert sorted(p.name for p in pool.workdir("warm").iterdir()) == ["input.csv"]
        clean = await pool.execute("warm", "[n for n in dir() if n in ('pandas', 'numpy')]")
        assert clean.result == "[]"  # the warm-up left no names behind
        await wait_for_spare(pool)  # a new spare replaces the used one
    finally:
        await pool.close()
    assert [p.name for p in (sandbox_root / "work").iterdir()] == ["warm"]  # no spare folders


async def test_kernels_run_as_distinct_unprivileged_uids(sandbox_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("per-kernel uids need root")
    pool = SandboxPool(make_config(sandbox_root))
    try:
        one = await pool.execute("one", "import os\nos.getuid()")
        two = await pool.execute("two", "import os\nos.getuid()")
        assert one.result and two.result and one.result != two.result
        assert 0 not in (int(one.result), int(two.result))
        assert pool.workdir("one").stat().st_uid == int(one.result)
    finally:
        await pool.close()


async def test_close_leaves_no_processes_or_runtime_folders(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, warm_spare=True))
    await pool.start()
    await pool.execute("a", "import os\nos.system('sleep 60 &')")
    await pool.execute("b", "1")
    await wait_for_spare(pool)
    assert processes_mentioning(str(sandbox_root))
    rundirs = [kernel.rundir for kernel in pool._all_kernels()]  # other runs may share /tmp
    assert len(rundirs) == 3 and all(path.is_dir() for path in rundirs)
    await pool.close()
    assert processes_mentioning(str(sandbox_root)) == []
    assert [path for path in rundirs if path.exists()] == []
    with pytest.raises(Exception, match="closed"):
        await pool.execute("a", "1")


async def test_event_loop_is_never_blocked(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root, warm_spare=True))
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        await pool.start()
        await pool.execute("cold", "x = 1")
        await wait_for_spare(pool)
        await pool.execute("warm", "open('/mnt/data/f', 'w').write('x')")
        await pool.discard("cold")
    finally:
        await pool.close()
        stop.set()
        await tick
    assert max(gaps) < 0.25, max(gaps)


async def test_host_file_helpers_never_follow_links(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root))
    target = sandbox_root / "host-secret.txt"
    target.write_text("host secret")
    folder = pool.workdir("links")
    (folder / "out.txt").symlink_to(target)  # as if planted while the host was reading
    with pytest.raises(OSError):
        pool.read_file("links", folder / "out.txt")
    (folder / "sub").symlink_to(sandbox_root)
    with pytest.raises(OSError):
        pool.read_file("links", "sub/host-secret.txt")
    pool.put_file("links", "out.txt", b"replaced")  # replaces the link, never writes through it
    assert target.read_text() == "host secret"
    assert not (folder / "out.txt").is_symlink()
    assert (folder / "out.txt").read_bytes() == b"replaced"
    with pytest.raises(ValueError):
        pool.put_file("links", "../escape.txt", b"x")
    with pytest.raises(ValueError):
        pool.read_file("links", sandbox_root / "host-secret.txt")
    with pytest.raises(OSError):  # too big: refused, never truncated
        pool.read_file("links", "out.txt", limit=3)
    assert pool.read_file("links", "out.txt", limit=8) == b"replaced"
    os.mkfifo(folder / "pipe")
    with pytest.raises(OSError):  # a FIFO neither hangs the host nor reads as a file
        pool.read_file("links", "pipe")
    await pool.close()


async def test_modules_left_in_the_folder_do_not_break_the_next_kernel(sandbox_root: Path) -> None:
    pool = SandboxPool(make_config(sandbox_root))  # no spare: the next kernel starts in the folder
    try:
        shadows = "".join(
            f"open('/mnt/data/{name}.py', 'w').write('raise SystemExit(\"shadowed {name}\")')\n"
            for name in ("json", "random", "asyncio", "zmq", "IPython", "traitlets", "logging")
        )
        assert (await pool.execute("shadow", shadows)).error is None
        assert (await pool.execute("shadow", "import os\nos._exit(3)")).restarted
        run = await pool.execute("shadow", "import os\nos.getcwd(), len(os.listdir())")
        assert run.result == "('/mnt/data', 7)"
    finally:
        await pool.close()
