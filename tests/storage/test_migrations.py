"""The revisions build what the models describe; upgrades are idempotent and take turns.

If a model changes without a revision, `test_models_match_the_revisions` fails: write one with
`python -m storage.migrations revision -m "what changed"`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text

from storage import Database, create_retrieval_schema, migrations


async def _versions(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        found = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return list(found.scalars())


@pytest.mark.parametrize("path", ["revisions", "new database"])
async def test_models_match_the_revisions(database: Database, path: str) -> None:
    """Running every revision, or creating a new database at head in one go (what `upgrade`
    does for an empty database), gives exactly the models' schema."""
    if path == "revisions":
        async with database.engine.connect() as conn:
            await conn.run_sync(
                lambda sync: command.upgrade(migrations.alembic_config(sync), "head")
            )
        await create_retrieval_schema(database)
    else:
        await database.upgrade()
    assert await _versions(database) == [migrations.head()]
    async with database.engine.connect() as conn:
        assert await conn.run_sync(migrations.differences) == []


async def test_each_revision_downgrades_to_the_one_before(database: Database) -> None:
    async with database.engine.connect() as conn:
        await conn.run_sync(lambda sync: command.upgrade(migrations.alembic_config(sync), "head"))
        await conn.run_sync(lambda sync: command.downgrade(migrations.alembic_config(sync), "base"))
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert tables == ["alembic_version"]


async def test_upgrade_at_head_migrates_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await database.upgrade()

    def fail(_connection: Connection) -> None:
        raise AssertionError("migrated a database already at head")

    monkeypatch.setattr(migrations, "upgrade", fail)
    await database.upgrade()
    assert await database.revision() == migrations.head()


async def test_concurrent_upgrades_take_turns(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = most = 0
    real = migrations.upgrade

    def counting(connection: Connection) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            real(connection)
        finally:
            inside -= 1

    monkeypatch.setattr(migrations, "upgrade", counting)
    replicas = [Database(database.url) for _ in range(4)]
    try:
        await asyncio.gather(*(db.upgrade() for db in replicas))
    finally:
        for db in replicas:
            await db.dispose()
    assert most == 1
    assert await _versions(database) == [migrations.head()]


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "ASSISTANTS_", "DATABASE_URL"))
    }
    env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    return env


async def _cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_two_processes_upgrading_one_database_at_once(
    database: Database, tmp_path: Path
) -> None:
    env = _env(tmp_path, database.url)
    results = await asyncio.gather(*(_cli(env, tmp_path, "db", "upgrade") for _ in range(2)))

    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == f"{migrations.head()} (head)"
    assert await _versions(database) == [migrations.head()]
    async with database.engine.connect() as conn:
        assert await conn.run_sync(migrations.differences) == []


async def test_db_upgrade_again_keeps_rows_and_db_current_prints_head(
    database: Database, tmp_path: Path
) -> None:
    await database.upgrade()
    async with database.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO thread (id, created_at, metadata) VALUES ('thread_kept', 1, '{}')")
        )
    env = _env(tmp_path, database.url)

    (code, out, err), (code2, current, err2) = await asyncio.gather(
        _cli(env, tmp_path, "db", "upgrade"), _cli(env, tmp_path, "db", "current")
    )

    assert (code, out.strip()) == (0, f"{migrations.head()} (head)"), err
    assert (code2, current.strip()) == (0, f"{migrations.head()} (head)"), err2
    assert await _versions(database) == [migrations.head()]
    async with database.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT id FROM thread"))).scalars().all()
    assert kept == ["thread_kept"]
