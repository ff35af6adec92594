"""Prompt build time against thread length: the engine's `build_prompt` on SQLite.

Messages of about 60 estimated tokens each, the default 100,000-token budget: a long thread
is truncated newest-first, so the time must stop growing once the budget is full.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from assistants.context import build_prompt
from storage import Database, MessageRow, RunRow

BUDGET = 100_000
_WORDS = "the quick brown fox jumps over the lazy dog and keeps on running " * 4


async def measure(sizes: list[int], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-prompt-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'prompt.db'}")
        await db.upgrade()
        try:
            for size in sizes:
                thread_id = f"thread_{size}"
                rows: list[dict[str, Any]] = [
                    {
                        "id": f"msg_{size}_{i}",
                        "thread_id": thread_id,
                        "created_at": i,
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": [
                            {"type": "text", "text": {"value": f"{i} {_WORDS}", "annotations": []}}
                        ],
                        "meta": {},
                    }
                    for i in range(size)
                ]
                async with db.session() as session:
                    for start in range(0, size, 2000):
                        await session.execute(insert(MessageRow), rows[start : start + 2000])
                run = RunRow(
                    id=f"run_{size}",
                    thread_id=thread_id,
                    assistant_id="asst_bench",
                    created_at=0,
                    status="in_progress",
                    model="fake-model",
                    instructions="You are a helpful assistant.",
                )
                samples = []
                kept = 0
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    async with db.session() as session:
                        prompt = await build_prompt(session, run, budget=BUDGET)
                    samples.append(time.perf_counter() - t0)
                    kept = len(prompt.messages) - 1
                samples = samples[1:]  # the first pays for cold caches
                results[str(size)] = {
                    "median_ms": round(statistics.median(samples) * 1000, 2),
                    "max_ms": round(max(samples) * 1000, 2),
                    "messages_in_prompt": kept,
                }
        finally:
            await db.dispose()
    return {"budget_tokens": BUDGET, "threads": results}
