"""Issue #7: N identical replicas behind a load balancer on one PostgreSQL, with nothing lost and
nothing done twice. Real processes: `python -m bot run` ×2, Debian's nginx rendered from
`deploy/nginx.conf`, PostgreSQL; Slack and the model are the fakes, in this process.

Slack delivers every event to nginx, which spreads them round robin; a test that needs a given
replica (follow-ups alternating between replicas) posts to that replica directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
import pytest

from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import Delivery, SlackFake
from tests.replicas.conftest import StartCluster
from tests.replicas.harness import Cluster, Postgres

pytestmark = pytest.mark.replicas

Json = dict[str, Any]

LEASE_SECONDS = 2.0
#: Beyond the lease: time to notice the lapse, fail the run and post the message.
TAKEOVER_MARGIN = 6.0
ACTIVE_RUNS = "SELECT count(*) FROM run WHERE status IN ('queued', 'in_progress', 'cancelling')"
UNANSWERED = "SELECT count(*) FROM slack_queued_message WHERE status = 'pending'"


# -- reading the emulator ------------------------------------------------------------------


def bot_replies(slack: SlackFake, channel: str, thread_ts: str) -> list[Json]:
    """The bot's messages in a thread, oldest first (the user's parent left out)."""
    return [
        message
        for message in slack.thread_messages(channel, thread_ts)
        if message["ts"] != thread_ts and message.get("bot_id") == slack.bot_id
    ]


def finished(slack: SlackFake, channel: str, message: Json) -> bool:
    """Posted whole, or streamed and stopped (not cut off mid-stream)."""
    return slack.stream_state(channel, message["ts"]) in (None, "stopped")


def answers(slack: SlackFake, channel: str, thread_ts: str) -> list[str]:
    """Texts of the bot's finished messages in a thread."""
    return [
        message.get("text", "")
        for message in bot_replies(slack, channel, thread_ts)
        if finished(slack, channel, message)
    ]


def final_calls(slack: SlackFake) -> list[Any]:
    """Slack calls that end an answer: a stopped stream, or a posted failure notice."""
    return [
        call
        for call in slack.calls
        if call.method == "chat.stopStream"
        or (
            call.method == "chat.postMessage"
            and str(call.args.get("text", "")).startswith(":warning:")
        )
    ]


def seen(slack: SlackFake, channel: str, thread_ts: str) -> list[tuple[str, str | None]]:
    """The bot's messages in a thread as (start of text, stream state), for failure reports."""
    return [
        (m.get("text", "")[:40], slack.stream_state(channel, m["ts"]))
        for m in bot_replies(slack, channel, thread_ts)
    ]


def failure_notice(text: str) -> bool:
    """A message telling the user the answer failed: a paragraph starting with ":warning:"
    (alone, or after the text streamed before the failure)."""
    return any(line.startswith(":warning:") for line in text.splitlines())


def thread_of(payload: Json) -> tuple[str, str]:
    event = payload["event"]
    return event["channel"], event.get("thread_ts") or event["ts"]


#: Slack waits this long for the ack, then retries the event (same event_id).
ACK_SECONDS = 3.0


async def deliver_once(slack: SlackFake, url: str, payload: Json, **retry: Any) -> Delivery:
    """One delivery; no answer at all (the emulator gives up after 10 s) is status 0."""
    started = time.monotonic()
    try:
        return await slack.deliver(url, payload, **retry)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Delivery(0, repr(exc), {}, time.monotonic() - started)


async def deliver_like_slack(slack: SlackFake, url: str, payload: Json) -> list[Delivery]:
    """Delivers as Slack does: an answer other than 2xx, none, or one later than 3 s is
    retried with `X-Slack-Retry-Num` (up to 3 times; Slack waits ~1 and ~5 min, this 0.5 s)."""

    async def attempt(**retry: Any) -> Delivery:
        return await deliver_once(slack, url, payload, **retry)

    attempts = [await attempt()]
    for retry in (1, 2, 3):
        last = attempts[-1]
        if last.status // 100 == 2 and last.elapsed <= ACK_SECONDS:
            break
        if retry > 1:
            await asyncio.sleep(0.5)
        reason = "http_error" if last.status else "connection_failed"
        if last.status // 100 == 2 or last.elapsed > ACK_SECONDS:
            reason = "http_timeout"
        attempts.append(await attempt(retry_num=retry, retry_reason=reason))
    return attempts


async def deliver_all(
    slack: SlackFake, url: str, payloads: Iterable[Json], *, concurrency: int = 16
) -> list[list[Delivery]]:
    """Every payload delivered like Slack, `concurrency` at a time; each one's attempts."""
    gate = asyncio.Semaphore(concurrency)

    async def one(payload: Json) -> list[Delivery]:
        async with gate:
            return await deliver_like_slack(slack, url, payload)

    return list(await asyncio.gather(*(one(payload) for payload in payloads)))


def ack_report(deliveries: list[list[Delivery]]) -> str:
    """Ack latency of first attempts, and how many events Slack would have retried."""
    firsts = sorted(attempts[0].elapsed for attempts in deliveries)
    retried = sum(len(attempts) > 1 for attempts in deliveries)
    p50, p99 = firsts[len(firsts) // 2], firsts[min(len(firsts) - 1, len(firsts) * 99 // 100)]
    return f"ack p50 {p50:.2f}s p99 {p99:.2f}s max {firsts[-1]:.2f}s, {retried} retried"


def refused(deliveries: list[list[Delivery]]) -> list[list[tuple[int, str]]]:
    """(status, body) of every attempt, for each event Slack could not deliver."""
    return [
        [(attempt.status, attempt.text[:200]) for attempt in attempts]
        for attempts in deliveries
        if attempts[-1].status != 200
    ]


async def quiet(cluster: Cluster, *, timeout: float) -> None:  # noqa: ASYNC109
    """Every accepted message answered and no run left active, as the database sees it."""
    try:
        await cluster.wait_db(UNANSWERED, 0, timeout=timeout)
        await cluster.wait_db(ACTIVE_RUNS, 0, timeout=timeout)
    except AssertionError as exc:
        pending = await _diagnose(
            cluster,
            "SELECT channel_id, thread_ts, message_ts, text FROM slack_queued_message "
            "WHERE status = 'pending' ORDER BY seq",
        )
        active = await _diagnose(
            cluster,
            "SELECT id, status, worker_id, lease_expires_at, metadata FROM run "
            "WHERE status IN ('queued', 'in_progress', 'cancelling') ORDER BY seq",
        )
        raise AssertionError(f"{exc}\npending messages:{pending}\nactive runs:{active}") from None


async def thread_story(cluster: Cluster, channel: str, thread_ts: str) -> str:
    """What the database knows of a conversation: its messages and their runs, in order."""
    where = {"channel": channel, "ts": thread_ts}
    messages = await _diagnose(
        cluster,
        "SELECT message_ts, text, status FROM slack_queued_message "
        "WHERE channel_id = :channel AND thread_ts = :ts ORDER BY seq",
        **where,
    )
    runs = await _diagnose(
        cluster,
        "SELECT r.id, r.status, r.worker_id, r.created_at, r.metadata FROM run r "
        "JOIN slack_thread s ON s.engine_thread_id = r.thread_id "
        "WHERE s.channel_id = :channel AND s.thread_ts = :ts ORDER BY r.seq",
        **where,
    )
    return f"queued messages:{messages}\nruns:{runs}"


async def _diagnose(cluster: Cluster, sql: str, **params: Any) -> str:
    """Rows for a failure report, one per line; a report never hides the failure itself."""
    try:
        rows = await cluster.rows(sql, **params)
    except Exception as exc:  # e.g. a column renamed since: say so and go on
        return f" (query failed: {exc!r:.200})"
    return "".join(f"\n  {tuple(row)}" for row in rows) or " none"


# -- 1. many mentions over two replicas ----------------------------------------------------


@pytest.mark.timeout(240)
async def test_200_mentions_over_two_replicas_are_answered_once_each_in_order(
    start_cluster: StartCluster, slack: SlackFake, model: ModelFake
) -> None:
    model.ttft = 0.02
    cluster = await start_cluster(size=2, lease_seconds=LEASE_SECONDS)
    channels = ["C1", "C2", "C3", "C4"]
    mentions = [
        slack.app_mention(channels[n % len(channels)], "U1", f"<@UBOT> question {n}")
        for n in range(200)
    ]
    followed = mentions[:4]

    async def follow_up(index: int, mention: Json) -> None:
        """Three messages in quick succession, alternating replicas, once the bot follows."""
        channel, ts = thread_of(mention)
        try:  # answered (or failed: the checks below tell) before the follow-ups come
            await slack.wait_for(lambda: bool(answers(slack, channel, ts)), timeout=90)
        except TimeoutError:
            pytest.fail(f"question {index} got no answer: {bot_replies(slack, channel, ts)}")
        for k in (1, 2, 3):
            event = slack.message(channel, "U1", f"follow-up {index}.{k}", thread_ts=ts)
            attempts = await deliver_like_slack(slack, cluster.replicas[k % 2].events_url, event)
            assert attempts[-1].status == 200, attempts

    started = time.monotonic()
    followers = [asyncio.create_task(follow_up(n, m)) for n, m in enumerate(followed)]
    try:
        deliveries = await deliver_all(slack, cluster.events_url, mentions)
        assert refused(deliveries) == []
        await asyncio.gather(*followers)
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)

    # Cheap to re-check on every Slack call: a stopped stream (or a failure notice) per question.
    questions = len(mentions) + 3 * len(followed)
    unsettled: AssertionError | None = None
    try:
        await slack.wait_for(lambda: len(final_calls(slack)) >= questions, timeout=100)
        await quiet(cluster, timeout=30)
    except (TimeoutError, AssertionError) as exc:
        # The per-thread checks below say more; this is reported if they pass.
        unsettled = AssertionError(f"not settled: {exc!r}")
    elapsed = time.monotonic() - started
    print(f"{questions} questions over 2 replicas in {elapsed:.1f}s; {ack_report(deliveries)}")

    # Exactly one reply per mention, in the mention's own thread, nothing cut off.
    for n, mention in enumerate(mentions):
        channel, ts = thread_of(mention)
        replies = bot_replies(slack, channel, ts)
        expected = [f"echo: question {n}"]
        if mention in followed:  # answered in the order asked
            expected += [f"echo: follow-up {n}.{k}" for k in (1, 2, 3)]
        texts = [r.get("text") for r in replies]
        if texts != expected:
            story = await thread_story(cluster, channel, ts)
            pytest.fail(f"thread {channel}/{ts} shows {texts}, not {expected}\n{story}")
        assert all(finished(slack, channel, r) for r in replies)
    for channel in channels:  # nothing posted outside a thread
        top_level = [
            m for m in slack.messages(channel) if m.get("bot_id") and not m.get("thread_ts")
        ]
        assert top_level == []

    if unsettled is not None:
        raise unsettled
    # Both replicas took events through nginx; the database agrees with what Slack shows.
    ports = {upstream.rsplit(":", 1)[-1] for upstream in cluster.nginx.upstreams()}
    assert {str(r.port) for r in cluster.replicas} <= ports
    assert await cluster.scalar("SELECT count(*) FROM slack_queued_message") == questions
    assert (
        await cluster.scalar("SELECT count(*) FROM slack_queued_message WHERE status = 'done'")
        == questions
    )
    assert await cluster.scalar("SELECT count(*) FROM run WHERE status = 'completed'") == questions
    assert all(replica.running for replica in cluster.replicas)


# -- 2. a replica killed while streaming ---------------------------------------------------

#: A ~10 s answer: 49 deltas of 10 characters, 0.2 s apart.
SLOW_ANSWER = " ".join(f"word{n:02d}" for n in range(70))
STREAM_SECONDS = 10.0


@pytest.mark.timeout(120)
async def test_a_killed_replicas_conversations_end_with_a_final_message(
    start_cluster: StartCluster, slack: SlackFake, model: ModelFake
) -> None:
    model.token_interval = 0.2
    model.set_default(lambda _request: text_reply(SLOW_ANSWER, chunk_size=10))
    cluster = await start_cluster(size=2, lease_seconds=LEASE_SECONDS)
    mentions = [slack.app_mention("C1", "U1", f"<@UBOT> slow {n}") for n in range(20)]
    threads = [thread_of(m) for m in mentions]

    deliveries = await deliver_all(slack, cluster.events_url, mentions)
    assert refused(deliveries) == []
    # Several streams under way (with text in them), on both replicas.
    await slack.wait_for(lambda: len(slack.calls_of("chat.appendStream")) >= 10, timeout=30)
    victim, survivor = cluster.replicas[1], cluster.replicas[0]
    killed_at = time.monotonic()
    victim.kill()
    assert victim.process is not None
    await victim.process.wait()

    def final(text: str) -> bool:
        return text == SLOW_ANSWER or failure_notice(text)

    ended_at: dict[str, float] = {}  # thread -> when its final message was first seen

    def every_thread_final() -> bool:
        for channel, ts in threads:
            if ts not in ended_at and (texts := answers(slack, channel, ts)) and final(texts[-1]):
                ended_at[ts] = time.monotonic()
        return len(ended_at) == len(threads)

    try:
        await slack.wait_for(
            every_thread_final, timeout=STREAM_SECONDS + LEASE_SECONDS + TAKEOVER_MARGIN
        )
    except TimeoutError:
        pending = [(channel, ts) for channel, ts in threads if ts not in ended_at]
        shown = [(ts, seen(slack, channel, ts)) for channel, ts in pending]
        story = await thread_story(cluster, *pending[0])
        pytest.fail(f"threads without a final message after the kill: {shown}\n{story}")

    warned = []
    for channel, ts in threads:
        finals = [text for text in answers(slack, channel, ts) if final(text)]
        if len(finals) != 1:
            story = await thread_story(cluster, channel, ts)
            pytest.fail(f"thread {ts} got {len(finals)} final messages: {finals}\n{story}")
        if failure_notice(finals[0]):
            warned.append(ts)
    assert warned, "the kill cut no stream short: nothing was tested"
    # Each cut conversation heard about it within the lease (plus the time to act on it).
    late = {ts: round(ended_at[ts] - killed_at, 1) for ts in warned}
    assert max(late.values()) <= LEASE_SECONDS + TAKEOVER_MARGIN, late

    await quiet(cluster, timeout=LEASE_SECONDS + TAKEOVER_MARGIN)
    assert survivor.running
    async with aiohttp.ClientSession() as http:
        assert await survivor.healthy(http)


# -- 4. PostgreSQL restarted under load ----------------------------------------------------

OUTAGE_SECONDS = 3.0


@pytest.mark.timeout(120)
async def test_service_resumes_after_postgres_restarts_under_load(
    start_cluster: StartCluster, postgres: Postgres, slack: SlackFake, model: ModelFake
) -> None:
    model.ttft = 0.02
    cluster = await start_cluster(size=2, lease_seconds=LEASE_SECONDS, database_url=postgres.url)
    pids = [replica.pid for replica in cluster.replicas]
    sent: list[tuple[Json, Delivery, str]] = []  # (mention, first delivery, phase)
    phase = "before"

    async def steady_mentions(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            mention = slack.app_mention("C1", "U1", f"<@UBOT> steady {n}")
            at = phase
            sent.append((mention, await deliver_once(slack, cluster.events_url, mention), at))
            n += 1
            await asyncio.sleep(0.1)

    stop = asyncio.Event()
    sender = asyncio.create_task(steady_mentions(stop))
    try:
        await asyncio.sleep(1.5)
        phase = "outage"
        await postgres.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        await postgres.start()
        phase = "after"
        await asyncio.sleep(2.0)
    finally:
        stop.set()
        await sender

    statuses = {delivery.status for _, delivery, _ in sent}
    assert statuses <= {200, 500, 502, 503, 504}, statuses  # accepted, or refused cleanly
    to_retry = [mention for mention, delivery, _ in sent if delivery.status != 200]
    assert to_retry, "no event met the outage: nothing was tested"
    assert any(d.status == 200 for _, d, at in sent if at == "before")

    # Service is back without restarting anything.
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 20
        while not all([await r.healthy(http) for r in cluster.replicas]):
            assert time.monotonic() < deadline, "a replica's /healthz did not recover"
            await asyncio.sleep(0.2)
    assert [r.pid for r in cluster.replicas] == pids
    assert all(replica.running for replica in cluster.replicas)

    # Slack retries what was refused: same event_id, X-Slack-Retry-Num counting up.
    for mention in to_retry:
        for attempt in (1, 2, 3):
            retry = await deliver_once(
                slack, cluster.events_url, mention, retry_num=attempt, retry_reason="http_error"
            )
            if retry.status == 200:
                break
            await asyncio.sleep(1.0)
        assert retry.status == 200, f"retry {attempt} of {mention['event_id']}: {retry.status}"

    # Every message Slack holds as delivered is answered exactly once.
    def final(text: str) -> bool:
        return text.startswith("echo: steady") or failure_notice(text)

    def unanswered() -> list[tuple[Json, Delivery, str]]:
        return [
            (mention, delivery, at)
            for mention, delivery, at in sent
            if not any(final(t) for t in answers(slack, *thread_of(mention)))
        ]

    try:
        await slack.wait_for(lambda: not unanswered(), timeout=LEASE_SECONDS + TAKEOVER_MARGIN + 10)
    except TimeoutError:
        shown = [
            f"{m['event_id']} ({at}, first answer {d.status}): {seen(slack, *thread_of(m))}"
            for m, d, at in unanswered()
        ]
        story = await thread_story(cluster, *thread_of(unanswered()[0][0]))
        pytest.fail(f"delivered but never answered: {shown}\n{story}")
    await quiet(cluster, timeout=LEASE_SECONDS + TAKEOVER_MARGIN)
    for mention, delivery, at in sent:
        channel, ts = thread_of(mention)
        texts = [text for text in answers(slack, channel, ts) if final(text)]
        if len(texts) != 1:
            story = await thread_story(cluster, channel, ts)
            pytest.fail(f"{mention['event_id']} ({at}) was answered {texts}\n{story}")
        if at == "after" and delivery.status == 200:  # asked once the database was back
            question = mention["event"]["text"].removeprefix("<@UBOT> ")
            assert texts[0] == f"echo: {question}", f"{mention['event_id']} ({at})"
    assert [r.pid for r in cluster.replicas] == pids
