"""What every command needs: the database, the model client and the engine, built from
settings, started together and closed in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from assistants import (
    Clock,
    Engine,
    Lease,
    ModelClient,
    RunnerConfig,
    SandboxConfig,
    default_embedder,
)
from bot.settings import Settings
from storage import Database, database_url_for

__all__ = ["Runtime", "open_runtime"]


class Runtime:
    """Built synchronously (so routes can be wired to it), started and closed asynchronously."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(database_url_for(settings.database_url, settings.data_dir))
        self.model = ModelClient(
            api_key=settings.model_api_key(),
            base_url=settings.openai_base_url,
            max_retries=settings.model_max_retries,
            timeout=settings.model_timeout,
        )
        self.engine = Engine(
            db=self.db,
            model=self.model,
            clock=clock,
            config=RunnerConfig(context_tokens=settings.context_tokens),
            data_dir=settings.data_dir,
            max_file_bytes=settings.max_file_mb * 1024 * 1024,
            embedder=default_embedder(client=self.model, model=settings.embedding_model),
            lease=Lease(
                **({"worker_id": settings.worker_id} if settings.worker_id else {}),
                seconds=settings.lease_seconds,
            ),
            sandbox=SandboxConfig(
                root=settings.data_dir / "sandboxes",
                python=settings.sandbox_python,
                max_kernels=settings.sandbox_kernels,
                exec_timeout=settings.sandbox_timeout,
            ),
        )

    async def start(self) -> None:
        await self.engine.start()

    async def drain(self) -> None:
        """Graceful shutdown: runs in flight get the grace period to finish."""
        await self.engine.drain(self.settings.shutdown_grace_seconds)

    async def close(self) -> None:
        await self.engine.close()
        await self.model.close()
        await self.db.dispose()


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings)
    try:
        await runtime.start()
        yield runtime
    finally:
        await runtime.close()
