"""The escape and resource battery: every attack is contained, described, and the next call works.

One pool serves the module (small caps so the limits are reached quickly); each attack uses
its own key unless it checks what happens to state.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from assistants.sandbox import Execution, SandboxPool
from tests.assistants.sandbox.sandbox_support import PYTHON, make_config, make_root

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROJECT = Path(__file__).resolve().parents[3]
CANARY = f"canary-{secrets.token_hex(16)}"
FILE_MB, QUOTA_MB, TMP_MB = 8, 24, 16
PYTHON_TOP = PYTHON.absolute().parts[1]  # "opt" for /opt/slack-assistants/sandbox-venv
PIDS = "import os\nsorted(p for p in os.listdir('/proc') if p.isdigit())"


@pytest.fixture(scope="module")
def canary_env() -> Iterator[str]:
    """A host secret in the test process's environment before the pool starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLACK_BOT_TOKEN", f"xoxb-{CANARY}")
        patch.setenv("SANDBOX_TEST_SECRET", CANARY)
        yield CANARY


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(sandbox_available: None, canary_env: str) -> AsyncIterator[SandboxPool]:
    root = make_root()
    config = make_config(
        root,
        exec_timeout=3.0,
        max_file_mb=FILE_MB,
        disk_quota_mb=QUOTA_MB,
        tmp_mb=TMP_MB,
        warm_spare=True,
    )
    pool = SandboxPool(config)
    await pool.start()
    yield pool
    await pool.close()
    shutil.rmtree(root, ignore_errors=True)


def report(run: Execution) -> dict[str, Any]:
    assert run.error is None, run.error
    data: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return data


async def works(pool: SandboxPool, key: str) -> None:
    run = await pool.execute(key, "6 * 7")
    assert run.result == "42", run


# ---------------------------------------------------------------------- network


@pytest_asyncio.fixture(loop_scope="module")
async def listeners() -> AsyncIterator[tuple[dict[str, int | str], list[str]]]:
    """TCP listeners on the host's 127.0.0.1 and ::1, and an abstract Unix socket."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    v4 = await asyncio.start_server(accept, "127.0.0.1", 0)
    ports: dict[str, int | str] = {"v4": v4.sockets[0].getsockname()[1]}
    servers = [v4]
    try:
        v6 = await asyncio.start_server(accept, "::1", 0)
        ports["v6"] = v6.sockets[0].getsockname()[1]
        servers.append(v6)
    except OSError:  # no IPv6 loopback on this host
        pass
    abstract = f"sandbox-test-{secrets.token_hex(6)}"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + abstract)
    unix.listen()
    unix.setblocking(False)
    ports["abstract"] = abstract
    try:
        yield ports, seen
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
        try:
            unix.accept()
            seen.append("abstract unix socket")
        except BlockingIOError:
            pass
        unix.close()


async def test_network_is_unreachable(
    pool: SandboxPool, listeners: tuple[dict[str, int | str], list[str]]
) -> None:
    ports, seen = listeners
    code = f"""
import json, socket
ports = {json.dumps(ports)}
out = {{}}
def attempt(name, family, kind, address):
    s = socket.socket(family, kind)
    s.settimeout(2)
    try:
        s.connect(address)
        if kind == socket.SOCK_DGRAM:
            s.send(b"x")
            s.recv(16)
        out[name] = "CONNECTED"
    except OSError as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
    finally:
        s.close()
attempt("tcp 1.1.1.1:53", socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 53))
attempt("udp 1.1.1.1:53", socket.AF_INET, socket.SOCK_DGRAM, ("1.1.1.1", 53))
attempt("host 127.0.0.1", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", ports["v4"]))
if "v6" in ports:
    attempt("host ::1", socket.AF_INET6, socket.SOCK_STREAM, ("::1", ports["v6"]))
attempt("abstract unix", socket.AF_UNIX, socket.SOCK_STREAM, "\\0" + ports["abstract"])
try:
    socket.getaddrinfo("pypi.org", 443)
    out["dns"] = "RESOLVED"
except OSError as exc:
    out["dns"] = type(exc).__name__
out["interfaces"] = [name for _, name in socket.if_nameindex()]
print(json.dumps(out))
"""
    started = time.monotonic()
    result = report(await pool.execute("net", code))
    assert time.monotonic() - started < 5  # refused at once, no waiting on a route
    assert result.pop("interfaces") == ["lo"]
    assert result.pop("dns") != "RESOLVED"
    for name, outcome in result.items():
        assert "CONNECTED" not in str(outcome), name
    assert "Network is unreachable" in str(result["tcp 1.1.1.1:53"])
    assert "Network is unreachable" in str(result["udp 1.1.1.1:53"])
    assert "Connection refused" in str(result["host 127.0.0.1"])
    await asyncio.sleep(0.1)
    assert seen == []  # the host listeners saw nothing
    await works(pool, "net")


# ---------------------------------------------------------------------- host files


async def test_host_files_are_out_of_sight(pool: SandboxPool) -> None:
    victim = pool.workdir("victim")
    (await pool.execute("victim", "open('/mnt/data/secret.txt', 'w').write('victim-secret')"))
    assert (victim / "secret.txt").read_text() == "victim-secret"
    fake_env = PROJECT / f".env.sandbox-test-{secrets.token_hex(4)}"
    fake_env.write_text(f"OPENAI_API_KEY=sk-{CANARY}\n")
    try:
        paths = [
            "/etc/shadow",
            "/etc/passwd",
            "/root/.bashrc",
            str(fake_env),
            str(PROJECT / ".env"),
            str(PROJECT / "pyproject.toml"),
            str(victim / "secret.txt"),
            "/mnt/data/../victim/secret.txt",
            "/proc/1/root/etc/shadow",
            "/sys/class/net",
        ]
        code = f"""
import json, os
out = {{}}
for path in {json.dumps(paths)}:
    try:
        with open(path) as handle:
            out[path] = "READ: " + handle.read(200)
    except OSError as exc:
        out[path] = type(exc).__name__
out["/"] = sorted(os.listdir("/"))
out["/etc"] = sorted(os.listdir("/etc"))
out["/mnt"] = sorted(os.listdir("/mnt"))
print(json.dumps(out))
"""
        run = await pool.execute("attacker", code)
        assert CANARY not in run.stdout and "victim-secret" not in run.stdout
        result = report(run)
    finally:
        fake_env.unlink()
    for path in paths:
        assert not str(result[path]).startswith("READ"), (path, result[path])
    # /usr with its merged-/usr links, the venv's parent, /mnt/data, /run/kernel, and no more
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc"}
    assert set(result["/"]) <= system | {"tmp", "mnt", "run", PYTHON_TOP}
    assert result["/etc"] == ["ld.so.cache"]
    assert result["/mnt"] == ["data"]
    await works(pool, "attacker")


async def test_host_secrets_are_nowhere_in_env_or_proc(pool: SandboxPool, canary_env: str) -> None:
    assert os.environ["SANDBOX_TEST_SECRET"] == canary_env
    code = """
import glob, json, os
blobs = {"env": json.dumps(dict(os.environ))}
for path in ["/proc/1/environ", "/proc/self/environ", *glob.glob("/proc/[0-9]*/environ"),
             *glob.glob("/proc/[0-9]*/cmdline"), "/run/kernel/kernel.json"]:
    try:
        with open(path, "rb") as handle:
            blobs[path] = handle.read().decode(errors="replace")
    except OSError as exc:
        blobs[path] = type(exc).__name__
blobs["pids"] = sorted(p for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(blobs))
"""
    run = await pool.execute("secrets", code)
    assert canary_env not in run.stdout + run.stderr
    blobs = report(run)
    env = json.loads(str(blobs["env"]))
    assert env["HOME"] == "/tmp" and "SLACK_BOT_TOKEN" not in env and "VIRTUAL_ENV" not in env
    assert blobs["/proc/1/environ"] == "PATH=/usr/bin:/bin\0"  # bubblewrap's own, scrubbed
    assert blobs["pids"] == ["1", "2"]  # the sandbox's reaper and the kernel, nothing of the host
    await works(pool, "secrets")


async def test_no_privileges_and_read_only_system(pool: SandboxPool) -> None:
    code = """
import json, os, subprocess, sys
out = {"uid": os.getuid(), "groups": os.getgroups()}
with open("/proc/self/status") as handle:
    out["caps"] = [line.split()[1] for line in handle if line.startswith("CapEff")]
nested = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True)
out["nested_userns"] = nested.returncode
for path in ["/usr/evil", sys.prefix + "/evil", "/evil", "/mnt/evil"]:
    try:
        open(path, "w").close()
        out[path] = "WRITTEN"
    except OSError as exc:
        out[path] = exc.errno
print(json.dumps(out))
"""
    result = report(await pool.execute("privileges", code))
    assert result["uid"] != 0
    assert result["caps"] == ["0000000000000000"]
    assert result["nested_userns"] != 0  # --disable-userns
    for path in ["/usr/evil", "/evil", "/mnt/evil"]:
        assert result[path] in (13, 30), path  # EACCES / EROFS
    assert [value for key, value in result.items() if key.endswith("/evil")].count("WRITTEN") == 0
    await works(pool, "privileges")


# ---------------------------------------------------------------------- resources


async def test_fork_bomb_is_stopped_and_cleaned_up(pool: SandboxPool) -> None:
    await pool.execute("forkbomb", "kept = 'yes'")
    started = time.monotonic()
    run = await pool.execute("forkbomb", "import os\nwhile True:\n    os.fork()")
    assert time.monotonic() - started < 5
    assert run.error is not None
    assert "BlockingIOError" in run.error or "Resource temporarily unavailable" in run.error
    assert not run.timed_out
    if run.restarted:  # forked copies of the kernel can wreck its ZMQ state: then it restarts
        assert "SandboxRestarted" in run.error
    else:
        assert (await pool.execute("forkbomb", "kept")).result == "'yes'"
    after = await pool.execute("forkbomb", PIDS)
    assert after.result == "['1', '2']"  # every forked process was killed and reaped
    # threads need NPROC room too: the kernel must be fully usable again
    code = "import threading\nt = threading.Thread(target=print, args=('ok',))\nt.start(); t.join()"
    run = await pool.execute("forkbomb", code)
    assert run.stdout == "ok\n"


async def test_shell_fork_bomb_in_background(pool: SandboxPool) -> None:
    run = await pool.execute(
        "shellbomb", "import os\nos.system(\"bash -c ':(){ :|:& };:' 2>/dev/null\")\n'launched'"
    )
    assert run.result == "'launched'" or run.restarted
    after = await pool.execute("shellbomb", PIDS)
    assert after.result == "['1', '2']"
    await works(pool, "shellbomb")


async def test_memory_bomb_raises_memory_error_and_kernel_lives(pool: SandboxPool) -> None:
    await pool.execute("memory", "kept = 'still here'")
    run = await pool.execute("memory", "big = bytearray(8 * 1024**3)")
    assert run.error is not None and run.error.startswith("MemoryError")
    code = (
        "def grow():\n"
        "    chunks = []\n"
        "    while True:\n"
        "        chunks.append(bytearray(64 * 1024 * 1024))\n"
        "grow()"
    )
    run = await pool.execute("memory", code)
    assert run.error is not None and run.error.startswith("MemoryError")
    assert not run.restarted
    assert (await pool.execute("memory", "kept")).result == "'still here'"


async def test_infinite_loop_times_out_and_keeps_state(pool: SandboxPool) -> None:
    await pool.execute("loop", "x = 5")
    started = time.monotonic()
    run = await pool.execute("loop", "while True:\n    pass", timeout=1.5)
    elapsed = time.monotonic() - started
    assert run.timed_out and not run.restarted
    assert run.error is not None and run.error.startswith("TimeoutError")
    assert "KeyboardInterrupt" in run.error
    assert 1.5 <= elapsed < 3.5
    assert (await pool.execute("loop", "x")).result == "5"


async def test_interrupt_ignoring_loop_is_killed_and_restarted(pool: SandboxPool) -> None:
    await pool.execute("stubborn", "x = 5")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    started = time.monotonic()
    run = await pool.execute("stubborn", code, timeout=1.5)
    elapsed = time.monotonic() - started
    assert run.timed_out and run.restarted
    assert run.error is not None and "restarted" in run.error
    assert 3.5 <= elapsed < 6  # 1.5 s limit + 2 s interrupt grace
    fresh = await pool.execute("stubborn", "x")
    assert fresh.error is not None and fresh.error.startswith("NameError")
    await works(pool, "stubborn")


async def test_file_size_cap(pool: SandboxPool) -> None:
    code = f"""
try:
    with open("/mnt/data/big.bin", "wb") as handle:
        handle.write(b"0" * ({FILE_MB} + 1) * 1024 * 1024)
    print("WRITTEN")
except OSError as exc:
    print(exc.errno)
"""
    run = await pool.execute("fsize", code)
    assert run.stdout.strip() == "27"  # EFBIG
    assert (pool.workdir("fsize") / "big.bin").stat().st_size <= FILE_MB * 1024 * 1024
    await works(pool, "fsize")


async def test_tmp_is_size_capped(pool: SandboxPool) -> None:
    code = """
try:
    for i in range(4):
        with open(f"/tmp/fill{i}", "wb") as handle:
            handle.write(b"0" * 6 * 1024 * 1024)
    print("WRITTEN")
except OSError as exc:
    print(exc.errno)
"""
    run = await pool.execute("tmp", code)
    assert run.stdout.strip() == "28"  # ENOSPC: 24 MB do not fit in TMP_MB
    await works(pool, "tmp")


async def test_disk_quota_removes_what_the_execution_wrote(pool: SandboxPool) -> None:
    keep = await pool.execute("quota", "open('/mnt/data/keep.txt', 'w').write('earlier work')")
    assert keep.error is None
    code = """
import os
os.makedirs("/mnt/data/out", exist_ok=True)
for i in range(4):
    with open(f"/mnt/data/out/part{i}.bin", "wb") as handle:
        handle.write(b"0" * 7 * 1024 * 1024)
"""
    run = await pool.execute("quota", code)
    workdir = pool.workdir("quota")
    assert run.error is not None and run.error.startswith("DiskQuotaExceeded")
    assert run.files == []
    assert sorted(p.name for p in workdir.iterdir()) == ["keep.txt"]
    assert (workdir / "keep.txt").read_text() == "earlier work"
    await works(pool, "quota")


async def test_disk_filling_loop_is_interrupted(pool: SandboxPool) -> None:
    code = """
written = 0
for i in range(2000):
    with open(f"/mnt/data/fill{i}.bin", "wb") as handle:
        handle.write(b"0" * 1024 * 1024)
    written += 1
"""
    started = time.monotonic()
    run = await pool.execute("filler", code, timeout=20)
    assert time.monotonic() - started < 10
    assert run.error is not None and run.error.startswith("DiskQuotaExceeded")
    assert "interrupted" in run.error
    assert not run.restarted
    assert list(pool.workdir("filler").iterdir()) == []
    written = await pool.execute("filler", "written")
    assert written.result is not None and 0 < int(written.result) < 2000


async def test_links_planted_in_mnt_data_are_removed(pool: SandboxPool) -> None:
    code = """
import os
os.symlink("/etc/ld.so.cache", "/mnt/data/cache-link")
os.symlink("/", "/mnt/data/root-link")
os.mkfifo("/mnt/data/fifo")
"""
    run = await pool.execute("links", code)
    assert "removed" in run.stderr
    assert run.files == []
    assert list(pool.workdir("links").iterdir()) == []
    await works(pool, "links")


async def test_crash_restarts(pool: SandboxPool) -> None:
    await pool.execute("crash", "x = 1")
    run = await pool.execute("crash", "import os\nos._exit(3)")
    assert run.restarted and run.error is not None and run.error.startswith("KernelDied")
    await works(pool, "crash")


async def test_huge_output_is_capped(pool: SandboxPool) -> None:
    run = await pool.execute("chatty", "print('x' * 3_000_000)\n'y' * 3_000_000")
    assert 1_000_000 <= len(run.stdout) < 1_001_000 and "truncated" in run.stdout
    assert run.result is not None and len(run.result) <= 1_000_000
    await works(pool, "chatty")


async def test_background_threads_are_frozen_between_executions(pool: SandboxPool) -> None:
    code = """
import threading, time
ticks = [0]
def tick():
    while True:
        ticks[0] += 1
        open("/mnt/data/tick.txt", "w").write(str(ticks[0]))
        time.sleep(0.01)
threading.Thread(target=tick, daemon=True).start()
time.sleep(0.1)
"""
    assert (await pool.execute("frozen", code)).error is None
    tick = pool.workdir("frozen") / "tick.txt"
    seen = tick.read_text()
    await asyncio.sleep(0.5)
    assert tick.read_text() == seen  # nothing ran in the sandbox meanwhile
    run = await pool.execute("frozen", "import time\ntime.sleep(0.2)\nticks[0] > 10")
    assert run.result == "True"  # and it carries on while code runs
