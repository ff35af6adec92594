"""The engine: one object that wires the services, the runner and the expiry sweeper.

engine = Engine(db=Database(url), model=AsyncOpenAI(base_url=...))
await engine.start()
run = await engine.runs.create(thread.id, RunCreate(assistant_id=...))
...
await engine.close()
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from pathlib import Path

import openai

from assistants.assistants import AssistantService
from assistants.clock import Clock, SystemClock
from assistants.events import EventHub
from assistants.files import FileService
from assistants.lifecycle import RunLifecycle
from assistants.locking import ACTIVE_RUN_STATUSES, ThreadLocks
from assistants.messages import MessageService
from assistants.runner import Runner, RunnerConfig
from assistants.runs import RunService
from assistants.threads import ThreadService
from storage import Database

__all__ = ["Engine"]

log = logging.getLogger("assistants.engine")


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
        sweep_interval: float = 5.0,
    ) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.events = EventHub()
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        locks = ThreadLocks()
        lifecycle = RunLifecycle(db=db, clock=self.clock, events=self.events)
        self.runner = Runner(
            db=db,
            clock=self.clock,
            events=self.events,
            lifecycle=lifecycle,
            model=model,
            config=config or RunnerConfig(),
        )
        self.assistants = AssistantService(db=db, clock=self.clock)
        self.files = FileService(
            db=db, clock=self.clock, root=data_dir / "files", max_bytes=max_file_bytes
        )
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
        )
        self._lifecycle = lifecycle

    async def start(self) -> None:
        """Creates the schema, ends runs a previous process left unfinished, starts sweeping."""
        await self.db.create_all()
        await self._fail_orphans()
        await self.files.sweep_orphans()
        self._sweeper = asyncio.create_task(self._sweep(), name="run expiry sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._sweeper
        await self.runner.close()

    async def _stop_thread_runs(self, thread_id: str) -> None:
        await self.runs.stop_thread_runs(thread_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.runs.expire_due()
            except Exception:
                log.exception("expiring runs failed; will retry")

    async def _fail_orphans(self) -> None:
        """Runs that were working when the process stopped cannot resume here: end them."""
        from sqlmodel import col, select

        from storage import RunRow

        async with self.db.session() as session:
            statement = select(RunRow.id).where(
                col(RunRow.status).in_([s for s in ACTIVE_RUN_STATUSES if s != "requires_action"])
            )
            orphans = list((await session.exec(statement)).all())
        for run_id in orphans:
            await self._lifecycle.finish(
                run_id,
                "failed",
                last_error={
                    "code": "server_error",
                    "message": "The server restarted while the run was in progress.",
                },
            )
