"""A database the release before migrations made upgrades with every row kept, and works."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import openai
import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlmodel import col, select

from assistants import Engine, ManualClock
from assistants.params import ListQuery, MessageCreate
from storage import (
    AssistantRow,
    ChunkRow,
    Database,
    QueuedMessageRow,
    ReminderRow,
    RunRow,
    SlackThreadRow,
    VectorStoreRow,
    migrations,
)
from tests.storage.conftest import PREVIOUS_TABLES, only_columns_of, read_rows


async def _table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_keeps_every_row_and_adds_the_new_schema(previous_release: Database) -> None:
    db = previous_release
    before = await read_rows(db)
    assert {table: len(rows) for table, rows in before.items()} == {
        "assistant": 2,
        "chunk": 2,
        "file": 2,
        "message": 3,
        "run": 1,
        "run_step": 2,
        "slack_assistant_choice": 1,
        "slack_processed_event": 2,
        "slack_queued_message": 2,
        "slack_reminder": 1,
        "slack_thread": 1,
        "thread": 2,
        "vector_store": 1,
        "vector_store_batch": 1,
        "vector_store_file": 2,
    }
    assert await db.revision() is None  # made without Alembic

    await db.upgrade()

    assert await db.revision() == migrations.head()
    assert only_columns_of(await read_rows(db), before) == before
    assert {"run_event", "slack_conversation_claim"} <= await _table_names(db)
    async with db.session() as session:
        names = (await session.exec(select(AssistantRow.name).order_by(AssistantRow.seq))).all()
        assert names == ["Keeper", "Plain"]
        run = (await session.exec(select(RunRow))).one()
        assert (run.status, run.worker_id, run.lease_expires_at) == ("completed", None, None)
        queued = (await session.exec(select(QueuedMessageRow).order_by(QueuedMessageRow.seq))).all()
        assert [(q.text, q.status) for q in queued] == [
            ("When is the clock wound?", "done"),
            ("And the wicks?", "pending"),
        ]
        assert queued[1].files == [{"id": "F0FIX", "name": "a.txt"}]
        reminder = (await session.exec(select(ReminderRow))).one()
        assert (reminder.id, reminder.text, reminder.due_at) == (
            "rem_fixture",
            "Wind the clock",
            1_763_600_000,
        )
        chunks = (await session.exec(select(ChunkRow).order_by(col(ChunkRow.seq)))).all()
        assert [c.filename for c in chunks] == ["manual.txt", "notes.md"]
        assert chunks[0].embedding == struct.pack("<4f", 0.5, 0.5, 0.5, 0.5)
        assert "every Tuesday at dawn" in chunks[0].text
    async with db.engine.connect() as conn:
        for table in ("run_event", "slack_conversation_claim"):
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
        # What the upgraded database has is what the models describe.
        differences = await conn.run_sync(migrations.differences)
    assert differences == []


async def test_the_engine_works_on_the_upgraded_data(
    previous_release: Database,
    model_client: openai.AsyncOpenAI,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    engine = Engine(
        db=previous_release, model=model_client, clock=clock, data_dir=tmp_path / "data"
    )
    await engine.start()  # upgrades
    try:
        async with previous_release.session() as session:
            link = (await session.exec(select(SlackThreadRow))).one()
            store = (await session.exec(select(VectorStoreRow))).one()
        thread_id = link.engine_thread_id

        page = await engine.messages.list(thread_id, ListQuery(order="asc"))
        assert [m.role for m in page.data] == ["user", "assistant"]
        question, answer = (m.content[0] for m in page.data)
        assert question.text.value == "When is the clock wound?"  # type: ignore[union-attr]
        assert answer.text.value.startswith("The clock is wound every Tuesday")  # type: ignore[union-attr]
        [citation] = answer.text.annotations  # type: ignore[union-attr]
        assert citation.type == "file_citation"

        added = await engine.messages.create(
            thread_id, MessageCreate(role="user", content="And on holidays?")
        )
        page = await engine.messages.list(thread_id, ListQuery(order="asc"))
        assert [m.id for m in page.data][-1] == added.id and len(page.data) == 3

        # The full-text index covers the chunks written before the upgrade.
        hits = await engine.vector_stores.search_stores([store.id], "great clock Tuesday", 5, 0.0)
        assert hits and hits[0].filename == "manual.txt"
    finally:
        await engine.close()


async def test_a_failing_revision_leaves_the_database_as_it_was(
    previous_release: Database, tmp_path: Path
) -> None:
    # The real revisions plus one that breaks half way, in a script directory of their own.
    scripts = tmp_path / "migrations"
    shutil.copytree(Path(migrations.__file__).parent, scripts)
    head = migrations.head()
    (scripts / "versions" / "9999_broken.py").write_text(
        f'revision = "9999"\ndown_revision = "{head}"\nbranch_labels = None\n'
        "depends_on = None\n\n"
        "from alembic import op\n"
        "import sqlalchemy as sa\n\n\n"
        "def upgrade():\n"
        '    op.create_table("broken", sa.Column("seq", sa.Integer, primary_key=True))\n'
        '    op.execute("INSERT INTO broken VALUES (1)")\n'
        '    op.execute("SELECT * FROM no_such_table")\n'
    )
    db = previous_release
    before = await read_rows(db)

    def upgrade(sync: object) -> None:
        config = migrations.alembic_config(sync)  # type: ignore[arg-type]
        config.set_main_option("script_location", str(scripts))
        command.stamp(config, migrations.BASELINE)
        command.upgrade(config, "head")

    async with db.engine.connect() as conn:
        with pytest.raises(Exception, match="no_such_table"):
            await conn.run_sync(upgrade)

    # Everything after the stamp rolled back together: no half-migrated schema.
    assert await db.revision() == migrations.BASELINE
    tables = await _table_names(db)
    assert not {"broken", "run_event", "slack_conversation_claim"} & tables
    assert set(PREVIOUS_TABLES) <= tables
    assert await read_rows(db) == before

    await db.upgrade()  # the next start finishes the job
    assert await db.revision() == head
    assert only_columns_of(await read_rows(db), before) == before
