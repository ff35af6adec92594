"""Real processes for the scale-out tests: bot replicas, nginx in front, a PostgreSQL to restart.

Everything here is a real process on loopback: `python -m bot run` per replica (HTTP mode, its
own PORT and DATA_DIR, one shared DATABASE_URL), Debian's nginx rendered from
`deploy/nginx.conf` (so what is tested is what docker-compose ships), and, for the restart
scenario, a throwaway cluster from `.ci/postgres`. The Slack emulator and the scripted model
run in the test process. Each process writes its output to a log file whose tail is shown when
a test fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "NGINX",
    "NGINX_TEMPLATE",
    "REPO_ROOT",
    "Cluster",
    "Nginx",
    "Postgres",
    "Replica",
    "free_port",
    "need",
    "render_nginx_conf",
    "reset_schema",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPO_ROOT / "deploy" / "nginx.conf"
NGINX = Path(os.environ.get("NGINX_BIN", "/usr/sbin/nginx"))
PG_SCRIPT = REPO_ROOT / ".ci" / "postgres"

#: Seconds a replica may take from exec to a healthy /healthz (imports, schema, assistants).
STARTUP_TIMEOUT = 60.0

ASSISTANTS_YML = """\
defaults:
  dm: Helper
  channel: Helper
assistants:
  - name: Helper
    model: fake-model
    description: Answers in the replicas tests.
    instructions: You are a helpful assistant.
"""

# Variables of the developer's or CI's environment that must not leak into a replica.
_OWN_PREFIXES = ("SLACK_", "OPENAI_", "ASSISTANTS_", "DATABASE_URL", "TEST_DATABASE_URL")
_OWN_NAMES = {"PORT", "DATA_DIR", "WORKER_ID", "LEASE_SECONDS", "SHUTDOWN_GRACE_SECONDS"}


def need(condition: bool, reason: str) -> None:
    """Skip without what these tests need, or fail when `REPLICAS_REQUIRED=1` (CI)."""
    if condition:
        return
    if os.environ.get("REPLICAS_REQUIRED") == "1":
        pytest.fail(f"REPLICAS_REQUIRED=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _tail(path: Path, lines: int) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    # The scheduler's "running job" lines say nothing about a failure and would fill the tail.
    content = [line for line in content if '"logger": "apscheduler' not in line]
    return "\n".join(content[-lines:])


def _public_dir(prefix: str) -> Path:
    """A fresh directory that service users (nginx's `nobody`, `postgres`) can enter; pytest's
    tmp_path sits under a 0700 directory of the user running the tests."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# -- nginx ---------------------------------------------------------------------------------


def render_nginx_conf(
    template: str, *, listen_port: int, upstream_ports: Iterable[int], runtime_dir: Path
) -> str:
    """`deploy/nginx.conf` for processes on loopback: the upstream's `server` lines, `listen`,
    the pid file and the temp-file prefix change; every other line is the shipped one."""
    shipped = re.findall(r"^([ \t]*)server \S+:3000 (.*);$", template, flags=re.M)
    if not shipped:
        raise ValueError("no `server HOST:3000 ...;` line in the nginx template")
    indent, options = shipped[0]
    servers = "".join(f"{indent}server 127.0.0.1:{port} {options};\n" for port in upstream_ports)
    replacements = (
        (r"^[ \t]*server \S+:3000 .*;\n(?:[ \t]*server \S+:3000 .*;\n)*", servers),
        (r"^([ \t]*)listen 3000;$", rf"\g<1>listen 127.0.0.1:{listen_port};"),
        (r"^pid /var/run/nginx\.pid;$", f"pid {runtime_dir}/nginx.pid;"),
        (r"/var/cache/nginx/", f"{runtime_dir}/"),
    )
    rendered = template
    for pattern, replacement in replacements:
        rendered, found = re.subn(pattern, replacement, rendered, flags=re.M)
        if not found:
            raise ValueError(f"the nginx template has no line matching {pattern!r}")
    return rendered


@dataclass
class Nginx:
    """Debian's nginx in the foreground, balancing over the given replica ports."""

    port: int
    directory: Path  # runtime: pid, temp files (removed by cleanup)
    log_path: Path  # access and error log, kept with the test's files
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def config_for(cls, upstream_ports: Iterable[int], *, log_path: Path) -> Nginx:
        nginx = cls(free_port(), _public_dir("replicas-nginx."), log_path)
        conf = render_nginx_conf(
            NGINX_TEMPLATE.read_text(),
            listen_port=nginx.port,
            upstream_ports=upstream_ports,
            runtime_dir=nginx.directory,
        )
        (nginx.directory / "nginx.conf").write_text(conf)
        return nginx

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(NGINX),
                "-p",
                str(self.directory),
                "-c",
                str(self.directory / "nginx.conf"),
                "-g",
                "daemon off;",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    break
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        pytest.fail(f"nginx did not serve /healthz:\n{_tail(self.log_path, 30)}", pytrace=False)

    def upstreams(self) -> list[str]:
        """`upstream=` of every proxied request so far (one `ip:port` per attempt)."""
        return re.findall(r" upstream=(\S+)", self.log_path.read_text(errors="replace"))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # fast shutdown; SIGQUIT would wait for open streams
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                _kill_group(self.process)
                await self.process.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# -- replicas -------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `python -m bot run` process."""

    name: str
    port: int
    directory: Path
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    @property
    def log_path(self) -> Path:
        return self.directory / "replica.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=self.env,
                # Its own folder: no `.env` of the checkout is read, and DATA_DIR sits here.
                cwd=self.directory,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.process.pid

    async def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.running:
                    break
                if await self.healthy(http):
                    return
                await asyncio.sleep(0.1)
        state = "exited" if not self.running else f"not healthy after {timeout:.0f}s"
        pytest.fail(f"replica {self.name} {state}:\n{self.log_tail()}", pytrace=False)

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(5)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def kill(self) -> None:
        """`kill -9` of the replica and whatever it started (its process group)."""
        assert self.process is not None
        _kill_group(self.process)

    async def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code. How it went is appended
        to the replica's log."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            started, outcome = time.monotonic(), "exited"
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                outcome = "killed"
                _kill_group(self.process)
                await self.process.wait()
            with self.log_path.open("a") as log:
                log.write(
                    f"harness: SIGTERM, then {outcome} with code {self.process.returncode} "
                    f"after {time.monotonic() - started:.1f}s\n"
                )
        return self.process.returncode


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        pass


# -- PostgreSQL -----------------------------------------------------------------------------


def async_url(url: str) -> str:
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+psycopg://", url)


async def reset_schema(url: str) -> None:
    """An empty `public` schema, as the suite's `database` fixture gives every test."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@dataclass
class Postgres:
    """A throwaway cluster of `.ci/postgres`, which this test may stop and start again."""

    directory: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        return bool(
            shutil.which("pg_ctl")
            or os.environ.get("PG_BINDIR")
            or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        )

    @classmethod
    async def create(cls) -> Postgres:
        cluster = cls(_public_dir("replicas-pg."))
        cluster.port = int(await cluster._script("start"))
        return cluster

    async def stop(self) -> None:
        await self._script("stop")

    async def start(self) -> None:
        """Again, on the port its clients know."""
        await self._script("start", PG_PORT=str(self.port))

    async def destroy(self) -> None:
        try:
            await self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def _script(self, command: str, **env: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(PG_SCRIPT),
            command,
            str(self.directory),
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 90)
        if process.returncode != 0:
            pytest.fail(f".ci/postgres {command} failed:\n{err.decode()[-2000:]}", pytrace=False)
        return out.decode().strip()


# -- the whole deployment -------------------------------------------------------------------


@dataclass
class Cluster:
    """N replicas on one database behind nginx, plus a database handle for assertions."""

    database_url: str
    replicas: list[Replica]
    nginx: Nginx
    grace: float
    db: AsyncEngine = field(init=False)

    def __post_init__(self) -> None:
        # No pool: connections never outlive a PostgreSQL restart in the restart scenario.
        self.db = create_async_engine(async_url(self.database_url), poolclass=NullPool)

    @property
    def events_url(self) -> str:
        """Where Slack delivers: nginx's /slack/events."""
        return f"{self.nginx.url}/slack/events"

    @classmethod
    async def start(
        cls,
        *,
        root: Path,
        database_url: str,
        slack_url: str,
        bot_token: str,
        signing_secret: str,
        model_url: str,
        size: int = 2,
        lease_seconds: float = 2,
        shutdown_grace: float = 3,
        extra_env: Mapping[str, str] | None = None,
    ) -> Cluster:
        (root / "assistants.yml").write_text(ASSISTANTS_YML)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_OWN_PREFIXES) and k not in _OWN_NAMES
        }
        base.update(
            PYTHONPATH=str(REPO_ROOT),  # the checkout under test, whatever is installed
            PYTHONUNBUFFERED="1",
            SLACK_BOT_TOKEN=bot_token,
            SLACK_SIGNING_SECRET=signing_secret,
            SLACK_API_URL=slack_url,
            # The emulator enforces no rate limits here (the replicas' own subject is sharing
            # the work), so neither do the bots: pacing has its tests in tests/bot.
            SLACK_PACING="false",
            OPENAI_BASE_URL=model_url,
            OPENAI_API_KEY="model-key",
            MODEL_MAX_RETRIES="0",
            DATABASE_URL=database_url,
            ASSISTANTS_FILE=str(root / "assistants.yml"),
            LEASE_SECONDS=f"{lease_seconds:g}",
            SHUTDOWN_GRACE_SECONDS=f"{shutdown_grace:g}",
            # No code_interpreter here: without it no replica warms a sandbox kernel at start,
            # which would only cost CPU these tests need.
            SANDBOX_PYTHON=str(root / "no-sandbox" / "python"),
            LOG_LEVEL="INFO",
        )
        base.update(extra_env or {})
        replicas = []
        for index in range(1, size + 1):
            directory = root / f"app{index}"
            directory.mkdir()
            port = free_port()
            env = {
                **base,
                "PORT": str(port),
                "DATA_DIR": str(directory / "data"),
                "WORKER_ID": f"app{index}",
            }
            replicas.append(Replica(f"app{index}", port, directory, env))
        nginx = Nginx.config_for((r.port for r in replicas), log_path=root / "nginx.log")
        cluster = cls(database_url, replicas, nginx, grace=shutdown_grace + 10)
        try:
            # All at once, as `docker compose up` starts them.
            await asyncio.gather(*(replica.start() for replica in replicas))
            await asyncio.gather(*(replica.wait_healthy() for replica in replicas))
            await nginx.start()
        except BaseException:
            await cluster.close()
            raise
        return cluster

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.db.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.db.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def wait_db(
        self,
        sql: str,
        expected: Any,
        *,
        timeout: float,  # noqa: ASYNC109
        **params: Any,
    ) -> None:
        """Until `sql` answers `expected`; fails with the last answer."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = await self.scalar(sql, **params)
            if last == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert last == expected, f"{sql!r} gave {last!r} after {timeout:.0f}s, not {expected!r}"

    def log_tails(self, lines: int = 40) -> list[tuple[str, str]]:
        tails = [(f"replica {r.name} log", r.log_tail(lines)) for r in self.replicas]
        tails.append(("nginx log", _tail(self.nginx.log_path, 15)))
        return tails

    async def close(self) -> None:
        """Stops everything it started, whatever state it is in."""
        try:
            await self.nginx.stop()
        finally:
            await asyncio.gather(
                *(replica.stop(self.grace) for replica in self.replicas), return_exceptions=True
            )
            await self.db.dispose()
            self.nginx.cleanup()
