"""Bad files never crash anything: a failed status with last_error, or a 400; the good files in
the same batch are indexed; nothing is written outside DATA_DIR."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from assistants import Engine, ManualClock

GOOD = b"# Holidays\n\nThe office closes between Christmas and New Year."


@pytest.fixture
async def engine(  # a small upload limit, to test it without big files
    database: object, model_client: openai.AsyncOpenAI, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Engine]:
    engine = Engine(
        db=database,  # type: ignore[arg-type]
        model=model_client,
        clock=clock,
        data_dir=tmp_path / "data",
        max_file_bytes=64 * 1024,
    )
    await engine.start()
    yield engine
    await engine.close()


async def test_bad_files_fail_alone_with_a_reason(
    client: openai.AsyncOpenAI, engine: Engine, tmp_path: Path
) -> None:
    store = await client.vector_stores.create(name="mixed")
    batch = await client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[
            ("good.md", io.BytesIO(GOOD)),
            ("broken.pdf", io.BytesIO(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")),
            ("empty.txt", io.BytesIO(b"")),
            ("program.exe", io.BytesIO(b"MZ\x90\x00\x03" + bytes(200))),
        ],
    )
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 3
    files = (await client.vector_stores.files.list(store.id, limit=10)).data
    names = {f.id: (await client.files.retrieve(f.id)).filename for f in files}
    by_name = {names[f.id]: f for f in files}
    assert by_name["good.md"].status == "completed"
    for name, code in (
        ("broken.pdf", "invalid_file"),
        ("empty.txt", "invalid_file"),
        ("program.exe", "unsupported_file"),
    ):
        failed = by_name[name]
        assert failed.status == "failed" and failed.last_error is not None, name
        assert failed.last_error.code == code and failed.last_error.message, name
    hits = await client.vector_stores.search(store.id, query="when does the office close")
    assert [h.filename for h in hits.data] == ["good.md"]


async def test_oversized_and_nameless_uploads_are_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_big:
        await client.files.create(file=("big.txt", io.BytesIO(b"x" * 70_000)), purpose="assistants")
    assert "too large" in too_big.value.message
    with pytest.raises(openai.BadRequestError):
        await client.files.create(file=("..", io.BytesIO(b"data")), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as purpose:
        await client.files.create(file=("a.txt", io.BytesIO(b"data")), purpose="fine-tune")
    assert purpose.value.body["param"] == "purpose"  # type: ignore[index]
    assert (await client.files.list()).data == []


async def test_path_traversal_names_stay_inside_data_dir(
    client: openai.AsyncOpenAI, tmp_path: Path
) -> None:
    before = {p for p in tmp_path.parent.rglob("*") if "data" not in p.parts}
    stored = await client.files.create(
        file=("../../../../etc/evil.md", io.BytesIO(GOOD)), purpose="assistants"
    )
    assert stored.filename == "evil.md"
    assert (tmp_path / "data" / "files" / stored.id).read_bytes() == GOOD
    after = {p for p in tmp_path.parent.rglob("*") if "data" not in p.parts}
    assert after == before
    content = await client.files.content(stored.id)
    assert content.content == GOOD
    await client.files.delete(stored.id)
    assert not (tmp_path / "data" / "files" / stored.id).exists()
