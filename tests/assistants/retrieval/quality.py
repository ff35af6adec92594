"""The retrieval test set and its scoring, shared by the quality test and bench/retrieval.py.

`data/docs/` holds 66 short company-wiki pages of a fictional company (written for this
project), with near-duplicates and distractors (archived policies, two postmortems, US and
German variants of the same policy, two error-code pages). `data/queries.json` holds queries with
the file(s) that answer them, of three kinds:

- paraphrase: worded unlike the answer (where keyword search struggles),
- exact: codes, names, identifiers (where embeddings struggle),
- keyword: ordinary topical keywords.

recall@k here is the mean, over queries, of the share of relevant files among the files of the
top k hits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistants.retrieval import ChunkIndex, Mode, chunk_pages, extract_text

DATA = Path(__file__).parent / "data"
STORE = "vs_quality"


def documents() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted((DATA / "docs").iterdir()) if p.is_file()]


def queries() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((DATA / "queries.json").read_text("utf-8"))
    return loaded


async def ingest(index: ChunkIndex, store: str = STORE) -> int:
    """Extracts, chunks (hosted defaults: 800/400) and adds every document; returns chunks."""
    total = 0
    for name, data in documents():
        chunks = chunk_pages(extract_text(data, name))
        total += await index.add(store, f"file-{Path(name).stem}", name, chunks)
    return total


async def evaluate(
    index: ChunkIndex,
    modes: Sequence[Mode] = ("bm25", "dense", "hybrid"),
    *,
    k: int = 5,
    store: str = STORE,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        recalls: dict[str, list[float]] = {}
        reciprocal: list[float] = []
        misses: list[str] = []
        for item in queries():
            hits = await index.search([store], item["query"], max_results=k, mode=mode)
            files = [h.filename for h in hits]
            relevant = set(item["relevant"])
            recall = len(relevant & set(files[:k])) / len(relevant)
            recalls.setdefault(item["kind"], []).append(recall)
            rank = next((i for i, f in enumerate(files, 1) if f in relevant), None)
            reciprocal.append(1 / rank if rank else 0.0)
            if recall < 1:
                misses.append(item["query"])
        everything = [r for values in recalls.values() for r in values]
        results[mode] = {
            f"recall@{k}": round(sum(everything) / len(everything), 4),
            f"mrr@{k}": round(sum(reciprocal) / len(reciprocal), 4),
            "by_kind": {
                kind: round(sum(values) / len(values), 4) for kind, values in recalls.items()
            },
            "misses": misses,
        }
    return results
