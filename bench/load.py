"""Load benchmark of the Slack path: latency overhead, ack latency, throughput, memory, writes.

    python -m bench.load            # full run, a few minutes
    python -m bench.load --quick    # smaller counts, under a minute
    python -m bench.load --only throughput,overhead   # some scenarios only

Prints one JSON object per scenario on stdout (progress on stderr). Everything runs on
127.0.0.1: the Slack Web API emulator and the scripted model server (tests/fakes/) in this
process, the bot (`bench/_bot.py`: Runtime + http_app in HTTP mode, SQLite in a temporary
DATA_DIR) in a child process, so its CPU seconds and peak RSS are its own.

Overheads subtract the model's own time: "first text" is the first Slack write carrying text
minus the time the model needs to produce its first text (ttft + one token interval);
"final" is `chat.stopStream` minus the model's whole stream. Latency, throughput and memory
scenarios run with the emulator's rate limits off and the bot's pacing off (they measure our
code); `slack_writes` runs with the emulator's default tiers and the bot's pacing on (Slack's
published tiers, `bot/slack_pacing.py`) and counts writes and 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _prompt
from bench._bot import API_KEY
from tests.fakes.model_server import ModelFake, run_model_fake, text_reply
from tests.fakes.slack_server import SlackFake, run_slack_fake

ROOT = Path(__file__).resolve().parents[1]
_GC_PAUSES = "slack_assistants_gc_pause_seconds"
_WRITES = (
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "assistant.threads.setStatus",
)
_TEXT = ("chat.startStream", "chat.appendStream", "chat.postMessage", "chat.update")


def log(message: str) -> None:
    print(f"[bench.load] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50_ms": _ms(_pct(samples, 0.50)),
        "p99_ms": _ms(_pct(samples, 0.99)),
        "max_ms": _ms(max(samples)),
    }


# -- observing Slack ----------------------------------------------------------------------


@dataclass
class Conversation:
    channel: str
    sent: float = 0.0
    ack: float = 0.0
    first_text: float | None = None
    final: float | None = None
    writes: int = 0
    posted_whole: bool = False  # finished by chat.postMessage: no stream budget (deferred)
    failed: bool = False  # finished by an apology or an error notice
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Observer:
    """Wraps the emulator's method handlers to time each conversation's Slack writes."""

    def __init__(self, slack: SlackFake) -> None:
        self.slack = slack
        self.by_channel: dict[str, Conversation] = {}
        for method in _WRITES:
            self._wrap(method)

    def _wrap(self, method: str) -> None:
        inner = self.slack._methods[method]

        def handler(args: dict[str, Any]) -> dict[str, Any]:
            result = inner(args)
            now = time.monotonic()
            conv = self.by_channel.get(str(args.get("channel") or args.get("channel_id") or ""))
            if conv is not None:
                conv.writes += 1
                if conv.first_text is None and method in _TEXT:
                    conv.first_text = now
                if method == "chat.stopStream":
                    conv.final = now
                    conv.done.set()
                elif method == "chat.postMessage" and not conv.done.is_set():
                    # Streaming is available here, so a post is an answer deferred for want of
                    # stream budget (posted whole; ours are one message), or a failure notice.
                    conv.final = now
                    conv.failed = str(args.get("text") or "").startswith(":warning:")
                    conv.posted_whole = not conv.failed
                    conv.done.set()
            return result

        self.slack._methods[method] = handler

    def new(self, channel: str) -> Conversation:
        conv = self.by_channel[channel] = Conversation(channel)
        return conv


# -- the bot process ----------------------------------------------------------------------


class BotProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.events_url = f"http://127.0.0.1:{port}/slack/events"
        self.api_url = f"http://127.0.0.1:{port}/v1"
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self._ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def _status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_mb(self) -> float:
        return round(self._status_kb("VmRSS") / 1024, 1)

    def peak_rss_mb(self) -> float:
        return round(self._status_kb("VmHWM") / 1024, 1)

    async def full_collections(self) -> dict[str, float]:
        """The bot's full garbage collections since it started serving (each one stalls its
        event loop), from its `/metrics`."""
        import aiohttp
        from prometheus_client.parser import text_string_to_metric_families

        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as response:
            text = await response.text()
        full = {
            (sample.name, sample.labels.get("le")): sample.value
            for family in text_string_to_metric_families(text)
            if family.name == _GC_PAUSES
            for sample in family.samples
            if sample.labels.get("generation") == "2"
        }
        count = full.get((f"{_GC_PAUSES}_count", None), 0.0)
        seconds = full.get((f"{_GC_PAUSES}_sum", None), 0.0)
        within_50ms = full.get((f"{_GC_PAUSES}_bucket", "0.05"), 0.0)
        return {"count": count, "total_ms": _ms(seconds), "over_50_ms": count - within_50ms}


@asynccontextmanager
async def bot_process(
    slack: SlackFake, model: ModelFake, data_dir: Path, **options: float | bool
) -> AsyncIterator[BotProcess]:
    config = {"slack_url": slack.url, "model_url": model.url, "data_dir": str(data_dir), **options}
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "bench._bot", json.dumps(config)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the bot did not start: {line!r}")
    try:
        yield BotProcess(proc, int(line.split()[1]))
    finally:
        proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def environment(
    *, rate_limits: bool, ttft: float, token_interval: float, **options: float | bool
) -> AsyncIterator[tuple[SlackFake, ModelFake, Observer, BotProcess]]:
    """The emulator (`rate_limits`: its default tiers enforced), the model, the bot process
    (`options` go to its config: interval, stop_button_after, slack_pacing, ...)."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        async with (
            run_slack_fake() as slack,
            run_model_fake(ttft=ttft, token_interval=token_interval) as model,
        ):
            slack.enforce_rate_limits = rate_limits
            observer = Observer(slack)
            # The emulator and the model run in this process: a full collection walking its
            # start-up heap (~150 ms) would delay their answers and show as the bot's overhead.
            gc.collect()
            gc.freeze()
            async with bot_process(slack, model, Path(tmp) / "data", **options) as bot:
                yield slack, model, observer, bot


def reply_text(tokens: int) -> str:
    return "".join(f"w{i % 10:02d} " for i in range(tokens))  # 4 characters a token


def model_times(model: ModelFake, tokens: int) -> tuple[float, float]:
    """(first text, whole stream) as the scripted server plays a `tokens`-delta reply."""
    first = model.ttft + model.token_interval  # the role delta, then the first text
    total = model.ttft + model.token_interval * (tokens + 3)  # + finish, usage, [DONE]
    return first, total


_channels = iter(range(1, 10**9))


async def mention(slack: SlackFake, observer: Observer, bot: BotProcess) -> Conversation:
    channel = f"C{next(_channels):08d}"
    envelope = slack.app_mention(channel, "U1", "<@UBOT> hello there")
    return await _deliver(slack, bot, observer.new(channel), envelope)


async def direct_message(slack: SlackFake, observer: Observer, bot: BotProcess) -> Conversation:
    """A DM: its event carries `files`, so no look-up is spent on it (a mention's may be)."""
    channel = f"D{next(_channels):08d}"
    envelope = slack.message(channel, "U1", "hello there", channel_type="im")
    return await _deliver(slack, bot, observer.new(channel), envelope)


async def _deliver(
    slack: SlackFake, bot: BotProcess, conv: Conversation, envelope: dict[str, Any]
) -> Conversation:
    conv.sent = time.monotonic()
    delivery = await slack.deliver(bot.events_url, envelope)
    if delivery.status != 200:
        raise RuntimeError(f"/slack/events answered {delivery.status}: {delivery.text[:200]}")
    conv.ack = delivery.elapsed
    return conv


async def converse(
    slack: SlackFake, observer: Observer, bot: BotProcess, limit: float
) -> Conversation:
    conv = await mention(slack, observer, bot)
    async with asyncio.timeout(limit):
        await conv.done.wait()
    return conv


# -- scenarios ----------------------------------------------------------------------------


async def overhead(concurrency: int, rounds: int, tokens: int, ttft: float, tok: float) -> None:
    log(f"overhead: {concurrency} concurrent x {rounds} rounds")
    async with environment(
        rate_limits=False,
        ttft=ttft,
        token_interval=tok,
        stop_button_after=3600,
        slack_pacing=False,
    ) as (slack, model, observer, bot):
        model.set_default(lambda _req: text_reply(reply_text(tokens)))
        await converse(slack, observer, bot, 30)  # warm up (imports, first connections)
        first_model, total_model = model_times(model, tokens)
        convs: list[Conversation] = []
        for _ in range(rounds):
            convs += await asyncio.gather(
                *(converse(slack, observer, bot, 120) for _ in range(concurrency))
            )
        first = [c.first_text - c.sent - first_model for c in convs if c.first_text]
        final = [c.final - c.sent - total_model for c in convs if c.final]
        emit(
            {
                "scenario": f"overhead_c{concurrency}",
                "conversations": len(convs),
                "concurrency": concurrency,
                "model": {"ttft_ms": _ms(ttft), "token_interval_ms": _ms(tok), "tokens": tokens},
                "first_text_overhead": summary(first),
                "final_text_overhead": summary(final),
                "final_text_latency": summary([c.final - c.sent for c in convs if c.final]),
                "ack": summary([c.ack for c in convs]),
                "bot_full_gc": await bot.full_collections(),
                "slack_429": len(slack.rate_limited),
                "targets": {"first_p50_ms": 5, "first_p99_ms": 30, "ack_p99_ms": 50},
            }
        )


async def throughput(total: int, window: int) -> None:
    log(f"throughput: {total} replies, {window} in flight, zero-latency model")
    async with environment(
        rate_limits=False,
        ttft=0.0,
        token_interval=0.0,
        stop_button_after=3600,
        slack_pacing=False,
    ) as (slack, model, observer, bot):
        model.set_default(lambda _req: text_reply(reply_text(20)))
        await converse(slack, observer, bot, 30)
        gate = asyncio.Semaphore(window)

        async def one() -> Conversation:
            async with gate:
                return await converse(slack, observer, bot, 300)

        cpu0, t0 = bot.cpu_seconds(), time.monotonic()
        convs = await asyncio.gather(*(one() for _ in range(total)))
        elapsed, cpu = time.monotonic() - t0, bot.cpu_seconds() - cpu0
        emit(
            {
                "scenario": "throughput",
                "replies": total,
                "in_flight": window,
                "seconds": round(elapsed, 2),
                "replies_per_s": round(total / elapsed, 1),
                "bot_cpu_s_per_reply": round(cpu / total, 5),
                # The bot is one event loop: this is its ceiling on one core.
                "replies_per_bot_cpu_s": round(total / cpu, 1) if cpu else None,
                "bot_cpu_utilisation": round(cpu / elapsed, 2),
                "bot_peak_rss_mb": bot.peak_rss_mb(),
                "bot_full_gc": await bot.full_collections(),
                "ack": summary([c.ack for c in convs]),
                "slack_429": len(slack.rate_limited),
                "target_replies_per_s": 100,
            }
        )


async def memory(runs: int, stream_seconds: float) -> None:
    """`runs` DMs at once, each a `stream_seconds` model stream, with the bot as deployed
    (pacing on: past Slack's stream budget, answers are posted whole when done). Peak
    concurrency is the engine's own count of runs executing (`/metrics`)."""
    log(f"memory: {runs} concurrently streaming runs")
    tokens = 100
    async with environment(
        rate_limits=False,
        ttft=0.0,
        token_interval=stream_seconds / tokens,
        stop_button_after=3600,
        slack_pacing=True,
    ) as (slack, model, observer, bot):
        model.set_default(lambda _req: text_reply(reply_text(tokens)))
        await converse(slack, observer, bot, stream_seconds + 60)
        base = bot.rss_mb()
        gate = asyncio.Semaphore(100)

        async def one() -> Conversation | None:
            async with gate:
                try:
                    return await direct_message(slack, observer, bot)
                except TimeoutError:  # no ack within the emulator's 10 s: counted, not fatal
                    return None

        peak = RunsPeak(bot)
        async with peak.watching():
            delivered = await asyncio.gather(*(one() for _ in range(runs)))
            convs = [c for c in delivered if c is not None]
            with contextlib.suppress(TimeoutError):  # then report what is unfinished
                async with asyncio.timeout(stream_seconds * 4 + 120):
                    await asyncio.gather(*(c.done.wait() for c in convs))
        emit(
            {
                "scenario": "memory_streaming",
                "runs": runs,
                "stream_seconds_each": stream_seconds,
                "max_runs_executing_at_once": peak.value,
                "ack_timeouts_10s": runs - len(convs),
                "unfinished": sum(1 for c in convs if not c.done.is_set()),
                "failed": sum(1 for c in convs if c.failed),
                "posted_whole": sum(1 for c in convs if c.posted_whole),
                "ack": summary([c.ack for c in convs]),
                "bot_rss_idle_mb": base,
                "bot_peak_rss_mb": bot.peak_rss_mb(),
                "bot_full_gc": await bot.full_collections(),
                "final_text_latency": summary([c.final - c.sent for c in convs if c.final]),
                "slack_429": len(slack.rate_limited),
                "target_peak_rss_mb": 300,
            }
        )


class RunsPeak:
    """The most runs the bot executed at once, sampled from its `/metrics` every 0.2 s."""

    def __init__(self, bot: BotProcess) -> None:
        self._url = bot.metrics_url
        self.value = 0

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            task = asyncio.create_task(self._sample(http))
            try:
                yield
            finally:
                task.cancel()

    async def _sample(self, http: Any) -> None:
        while True:
            try:
                async with http.get(self._url) as response:
                    for line in (await response.text()).splitlines():
                        if line.startswith("slack_assistants_runs_active "):
                            self.value = max(self.value, int(float(line.split()[1])))
            except OSError:
                pass  # a busy bot: the next sample
            await asyncio.sleep(0.2)


async def slack_writes(concurrency: int, tokens: int, tok: float, limit: float) -> None:
    log(f"slack_writes: {concurrency} concurrent replies under the default Slack tiers")
    async with environment(rate_limits=True, ttft=0.1, token_interval=tok, slack_pacing=True) as (
        slack,
        model,
        observer,
        bot,
    ):
        model.set_default(lambda _req: text_reply(reply_text(tokens)))
        t0 = time.monotonic()
        convs = await asyncio.gather(*(mention(slack, observer, bot) for _ in range(concurrency)))
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*(c.done.wait() for c in convs))
        except TimeoutError:
            pass
        done = [c for c in convs if c.done.is_set() and not c.failed]
        by_method: dict[str, int] = {}
        for method in slack.rate_limited:
            by_method[method] = by_method.get(method, 0) + 1
        emit(
            {
                "scenario": f"slack_writes_c{concurrency}",
                "replies": concurrency,
                "completed": len(done),
                "posted_whole": sum(1 for c in done if c.posted_whole),
                "failed": sum(1 for c in convs if c.failed),
                "waited_s": round(time.monotonic() - t0, 1),
                "stream_seconds_each": round(tokens * tok, 2),
                "writes_per_reply": round(sum(c.writes for c in done) / max(len(done), 1), 2),
                "slack_429": len(slack.rate_limited),
                "slack_429_by_method": by_method,
                "final_text_latency": summary([c.final - c.sent for c in done if c.final]),
                "target_429": 0,
            }
        )


async def polling_baseline(runs: int, tokens: int, ttft: float, tok: float) -> None:
    """The seeds' polling client over our REST API, beside the bot's streaming path."""
    import openai

    log(f"polling baseline: {runs} runs each way")
    async with environment(
        rate_limits=False,
        ttft=ttft,
        token_interval=tok,
        stop_button_after=3600,
        slack_pacing=False,
    ) as (slack, model, observer, bot):
        model.set_default(lambda _req: text_reply(reply_text(tokens)))
        client = openai.AsyncOpenAI(base_url=bot.api_url, api_key=API_KEY, max_retries=0)
        assistant = await client.beta.assistants.create(model="fake-model", instructions="Hi.")
        polled: list[float] = []
        for _ in range(runs):
            thread = await client.beta.threads.create(
                messages=[{"role": "user", "content": "hello there"}]
            )
            t0 = time.monotonic()
            run = await client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
            while run.status in ("queued", "in_progress", "cancelling"):
                await asyncio.sleep(1.0)  # openai-poll-after-ms ignored, as the seed client
                run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
            messages = await client.beta.threads.messages.list(thread.id, run_id=run.id)
            assert messages.data and run.status == "completed", run.status
            polled.append(time.monotonic() - t0)
        await client.close()
        await converse(slack, observer, bot, 30)
        streamed = [
            c.final - c.sent
            for c in [await converse(slack, observer, bot, 30) for _ in range(runs)]
            if c.final
        ]
        _, total_model = model_times(model, tokens)
        p50_poll, p50_stream = statistics.median(polled), statistics.median(streamed)
        emit(
            {
                "scenario": "polling_baseline",
                "runs": runs,
                "model": {"ttft_ms": _ms(ttft), "token_interval_ms": _ms(tok), "tokens": tokens},
                "model_total_ms": _ms(total_model),
                "polling_client_to_final_text": summary(polled),
                "bot_streaming_event_to_final_text": summary(streamed),
                "speedup_p50": round(p50_poll / p50_stream, 2),
            }
        )


async def prompt_build(sizes: list[int], repeats: int) -> None:
    log(f"prompt build: threads of {sizes} messages")
    result = await _prompt.measure(sizes, repeats)
    emit({"scenario": "prompt_build", **result, "target_ms_at_10000": 20})


async def main(quick: bool, only: set[str]) -> None:
    started = time.monotonic()
    scenarios: list[tuple[str, Callable[[], Any]]]
    if quick:
        scenarios = [
            ("overhead", lambda: overhead(1, 5, 20, 0.2, 0.01)),
            ("overhead", lambda: overhead(50, 1, 20, 0.2, 0.01)),
            ("throughput", lambda: throughput(100, 50)),
            ("memory", lambda: memory(100, 5.0)),
            ("prompt_build", lambda: prompt_build([100, 10_000], 3)),
            ("slack_writes", lambda: slack_writes(10, 40, 0.05, 10)),
            ("polling_baseline", lambda: polling_baseline(1, 20, 0.2, 0.01)),
        ]
    else:
        scenarios = [
            ("overhead", lambda: overhead(1, 20, 20, 0.2, 0.01)),
            ("overhead", lambda: overhead(200, 1, 20, 0.2, 0.01)),
            ("throughput", lambda: throughput(400, 100)),
            ("memory", lambda: memory(1000, 150.0)),
            ("prompt_build", lambda: prompt_build([100, 1_000, 10_000], 10)),
            ("slack_writes", lambda: slack_writes(10, 100, 0.05, 25)),
            ("slack_writes", lambda: slack_writes(200, 100, 0.05, 240)),
            ("polling_baseline", lambda: polling_baseline(3, 20, 0.2, 0.01)),
        ]
    unknown = only - {name for name, _ in scenarios}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for name, scenario in scenarios:
        if not only or name in only:
            await scenario()
    log(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under a minute")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario names (default: all of them)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, {name for name in args.only.split(",") if name}))
