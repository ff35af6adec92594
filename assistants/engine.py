"""The engine: one object that wires the services, the runner and the expiry sweeper.

engine = Engine(db=Database(url), model=ModelClient(base_url=...))  # or any AsyncOpenAI
await engine.start()
run = await engine.runs.create(thread.id, RunCreate(assistant_id=...))
...
await engine.close()
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import openai

from assistants.assistants import AssistantService
from assistants.clock import Clock, SystemClock
from assistants.event_log import EventLog
from assistants.events import EventHub
from assistants.files import FileService
from assistants.heartbeat import Heartbeat
from assistants.leases import Lease
from assistants.lifecycle import RunLifecycle
from assistants.locking import ThreadLocks
from assistants.messages import MessageService
from assistants.retrieval import ChunkIndex, Embedder
from assistants.runner import Runner, RunnerConfig
from assistants.runs import RunService
from assistants.sandbox import SandboxConfig, SandboxPool, SandboxUnavailable
from assistants.scheduler import Scheduler
from assistants.threads import ThreadService
from assistants.tools import BuiltinTool
from assistants.tools.code_interpreter import CodeInterpreterTool
from assistants.tools.file_search import FileSearchTool
from assistants.vector_stores import VectorStoreService
from assistants.wire import run_wire
from storage import Database

__all__ = ["Engine"]

log = logging.getLogger("assistants.engine")

#: Where scripts/build-sandbox puts the sandbox's Python environment.
DEFAULT_SANDBOX_PYTHON = Path("/opt/slack-assistants/sandbox-venv/bin/python")


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        model: openai.AsyncOpenAI,
        clock: Clock | None = None,
        config: RunnerConfig | None = None,
        data_dir: Path = Path("data"),
        max_file_bytes: int = 512 * 1024 * 1024,
        embedder: Embedder | None = None,
        sandbox: SandboxConfig | None = None,
        sweep_interval: float = 5.0,
        lease: Lease | None = None,
        claim_interval: float = 0.5,
    ) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.lease = lease or Lease()
        self.heartbeat = Heartbeat(db.url, self.lease)
        self.event_log = EventLog(db, run_wire=run_wire)
        self.events = EventHub(sink=self.event_log.add)
        self._sweep_interval, self._claim_interval = sweep_interval, claim_interval
        # Maintenance (expiring runs and stores, reaping idle sandboxes) as APScheduler jobs;
        # each is safe to run on every replica.
        self._scheduler = Scheduler()
        locks = ThreadLocks()
        lifecycle = RunLifecycle(db=db, clock=self.clock, events=self.events, lease=self.lease)
        self.files = FileService(
            db=db, clock=self.clock, root=data_dir / "files", max_bytes=max_file_bytes
        )
        self.vector_stores = VectorStoreService(
            db=db,
            clock=self.clock,
            files=self.files,
            index=ChunkIndex(db, embedder),
            lease=self.lease,
            steady=self.heartbeat.steady,
        )
        self.sandbox = SandboxPool(
            sandbox or SandboxConfig(root=data_dir / "sandboxes", python=DEFAULT_SANDBOX_PYTHON)
        )
        tools: dict[str, BuiltinTool] = {
            "file_search": FileSearchTool(db=db, stores=self.vector_stores),
            "code_interpreter": CodeInterpreterTool(db=db, pool=self.sandbox, files=self.files),
        }
        self.runner = Runner(
            db=db,
            clock=self.clock,
            events=self.events,
            lifecycle=lifecycle,
            model=model,
            config=config or RunnerConfig(),
            tools=tools,
        )
        self.assistants = AssistantService(db=db, clock=self.clock)
        self.messages = MessageService(db=db, clock=self.clock, locks=locks)
        self.threads = ThreadService(
            db=db, clock=self.clock, locks=locks, stop_runs=self._stop_thread_runs
        )
        self.runs = RunService(
            db=db,
            clock=self.clock,
            locks=locks,
            events=self.events,
            lifecycle=lifecycle,
            runner=self.runner,
            threads=self.threads,
            log=self.event_log,
            steady=self.heartbeat.steady,
        )
        self.heartbeat.register(self.runner.renew_leases)
        self.heartbeat.register(self.vector_stores.renew_leases)

    async def start(self) -> None:
        """Brings the schema up to date, takes over runs whose worker is gone, starts the
        maintenance jobs."""
        await self.db.upgrade()
        self.event_log.start()
        await self.runs.take_over()
        await self.files.sweep_orphans()
        await self.vector_stores.take_over()
        try:
            await self.sandbox.start()
        except SandboxUnavailable as exc:
            log.warning("code_interpreter is unavailable: %s", exc)
        every = self._sweep_interval
        for job, seconds in (
            (self.runs.take_over, self._claim_interval),
            (self.runner.reconcile, self.lease.seconds / 3),
            (self.runs.expire_due, every),
            (self.event_log.purge, 60.0),
            (self.vector_stores.take_over, every),
            (self.vector_stores.expire_due, every * 12),
            (self.sandbox.reap_idle, every * 12),
        ):
            self._scheduler.add_job(
                job, "interval", seconds=seconds, max_instances=1, coalesce=True
            )
        self._scheduler.start()
        self.heartbeat.start()

    async def drain(self, grace: float) -> None:
        """Graceful shutdown, first half: takes no new runs and gives the working ones `grace`
        seconds to finish; those still working then end `failed`, saying why."""
        await self.runner.drain(grace)

    async def close(self) -> None:
        await self._scheduler.stop()
        await self.runner.close()
        await asyncio.to_thread(self.heartbeat.stop)
        await self.event_log.close()
        await self.vector_stores.close()
        await self.sandbox.close()

    async def _stop_thread_runs(self, thread_id: str) -> None:
        """A thread is being deleted: stop its run and drop its sandbox and working folder."""
        await self.runs.stop_thread_runs(thread_id)
        await self.sandbox.discard(thread_id)
