"""The HTTP app as its own process runs it: the heap start-up built is frozen out of the
garbage collector's full collections (they stalled the event loop 150-240 ms each), and every
collection from then on is timed on `/metrics`."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from bot.runtime import Runtime
from bot.server import http_app
from bot.settings import Settings


@pytest.fixture
def process_state() -> Iterator[None]:
    """This test process outlives the app: what it froze goes back to the collector, and the
    timer it installed comes out."""
    callbacks, thresholds = list(gc.callbacks), gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.callbacks[:] = callbacks
    gc.set_threshold(*thresholds)


def _full_collections(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('slack_assistants_gc_pause_seconds_count{generation="2"}'):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize("owns_process", [True, False])
async def test_start_up_settles_the_heap_only_where_the_app_is_the_process(
    bot_settings: Settings, process_state: None, owns_process: bool
) -> None:
    runtime = Runtime(bot_settings)
    runner = web.AppRunner(http_app(runtime, slack=True, owns_process=owns_process))
    await runner.setup()  # runs the start-ups: engine, bot
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    try:
        # Frozen objects are outside every generation a collection walks.
        assert any(o is runtime.engine for o in gc.get_objects()) is not owns_process
        assert (gc.get_threshold()[0] == 10_000) is owns_process
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                before = _full_collections(await response.text())
            gc.collect()
            async with http.get(url) as response:
                after = _full_collections(await response.text())
        assert after - before == (1 if owns_process else 0)
    finally:
        await runner.cleanup()
