"""Shared fixtures: a real database, the scripted model server, the engine and its REST API.

`TEST_DATABASE_URL` selects PostgreSQL (`.ci/run` sets it for the second pass); otherwise every
test gets its own SQLite file. Servers bind port 0 on loopback and the real `openai` SDK talks
to them over HTTP.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import openai
import pytest
from aiohttp import web
from sqlalchemy import text

from assistants import Engine, ManualClock, ModelClient
from assistants.api import api_app
from storage import Database
from tests.fakes.model_server import ModelFake, run_model_fake

API_KEY = "test-key"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        db = Database(url)
        async with db.engine.begin() as conn:  # a clean schema for every test
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    else:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    yield db
    await db.dispose()


@pytest.fixture
async def model() -> AsyncIterator[ModelFake]:
    async with run_model_fake() as fake:
        yield fake


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def model_client(model: ModelFake) -> AsyncIterator[openai.AsyncOpenAI]:
    client = ModelClient(base_url=model.url, api_key="model-key", max_retries=2)
    yield client
    await client.close()


@pytest.fixture
async def engine(
    database: Database, model_client: openai.AsyncOpenAI, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Engine]:
    engine = Engine(db=database, model=model_client, clock=clock, data_dir=tmp_path / "data")
    await engine.start()
    yield engine
    await engine.close()


@asynccontextmanager
async def serve_api(engine: Engine) -> AsyncIterator[str]:
    """The engine's REST API on a free loopback port; yields its base URL."""
    app = web.Application()
    app.add_subapp("/v1", api_app(engine, api_key=API_KEY, poll_after_ms=20))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def api_url(engine: Engine) -> AsyncIterator[str]:
    async with serve_api(engine) as url:
        yield url


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK pointed at our REST API, exactly as a user would configure it."""
    sdk = openai.AsyncOpenAI(base_url=api_url, api_key=API_KEY, max_retries=0)
    yield sdk
    await sdk.close()
