"""Slack conversations: the durable per-thread queue and the engine thread behind each one.

Every user message is written to the queue first (a unique row per Slack message, so a retried
event or a mention that also arrives as a `message` is stored once), then one worker per
Slack thread answers the queue in arrival order. A message that arrives while a run is active
simply waits its turn: the user never sees the engine's thread lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Connection, bindparam, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select, update

from assistants import (
    Clock,
    Conflict,
    Engine,
    EngineError,
    ListQuery,
    MessageCreate,
    NotFound,
    RunCreate,
    ThreadCreate,
)
from bot.claims import ConversationClaims
from bot.directory import AssistantDirectory
from bot.driver import RunDriver, RunOutcome
from bot.errors import friendly_error
from bot.functions import FunctionContext
from bot.metrics import ANSWER_SECONDS, ANSWERS, EVENTS
from bot.slack_files import SharedFiles, TakenFile
from bot.slack_pacing import RateLimit, SlackPacer
from bot.slack_reply import SlackReply
from storage import (
    DATABASE_UNAVAILABLE,
    Database,
    ProcessedEventRow,
    QueuedMessageRow,
    SlackThreadRow,
)

__all__ = ["Conversations", "Incoming", "ReplyOptions", "ThreadKey"]

log = logging.getLogger("bot.conversations")

_APOLOGY = ":warning: Sorry, something went wrong while answering. Please try again."


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """One conversation: a Slack thread, or ("", the DM's main conversation)."""

    team_id: str
    channel_id: str
    thread_ts: str


@dataclass(frozen=True, slots=True)
class Incoming:
    key: ThreadKey
    reply_thread_ts: str
    message_ts: str
    user_id: str
    text: str
    files: list[dict[str, Any]] | None = None
    #: The Slack event that carried it: stored with the message, so a retry is recognised.
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    interval: float = 0.7
    #: Seconds a run works before its requester gets a "Stop" button.
    stop_button_after: float = 3.0
    #: Answers being set up at once (engine thread, files, run). A burst of messages past this
    #: waits its turn, stored; without a bound, a thousand mentions at once queue so many
    #: database sessions that acks, streams and the pool itself time out.
    concurrent_starts: int = 16
    #: The Slack rate limits the bot keeps to (with SLACK_PACING on); None: Slack's published
    #: tiers (`bot.slack_pacing.SLACK_LIMITS`). Tests use small ones.
    slack_limits: Mapping[str, RateLimit] | None = None

    def __post_init__(self) -> None:
        if self.concurrent_starts < 1:
            raise ValueError(f"concurrent_starts must be at least 1, not {self.concurrent_starts}")


@dataclass(slots=True)
class _Active:
    thread_id: str
    run_id: str | None = None


class Conversations:
    def __init__(
        self,
        *,
        db: Database,
        engine: Engine,
        directory: AssistantDirectory,
        driver: RunDriver,
        client: AsyncWebClient,
        clock: Clock,
        files: SharedFiles,
        pacer: SlackPacer | None = None,
        options: ReplyOptions = ReplyOptions(),
        context: Callable[[Incoming], FunctionContext] | None = None,
    ) -> None:
        self._db, self._engine, self._directory, self._files = db, engine, directory, files
        self._driver, self._client, self._clock, self._options = driver, client, clock, options
        #: Slack's rate limits, as the client keeps them (`slack_client`); none: unpaced.
        self._pacer = pacer or SlackPacer(limits={})
        self._context = context or (lambda m: FunctionContext())
        self._claims = ConversationClaims(
            db=db,
            worker_id=engine.lease.worker_id,
            seconds=engine.lease.seconds,
            steady=engine.heartbeat.steady,
        )
        self._workers: dict[ThreadKey, asyncio.Task[None]] = {}
        #: The keys of `_workers`, replaced whole on each change: the heartbeat thread reads it.
        self._held: tuple[ThreadKey, ...] = ()
        engine.heartbeat.register(self._renew_claims)
        self._kicked: set[ThreadKey] = set()
        self._starting = asyncio.Semaphore(options.concurrent_starts)
        self._draining = False
        self.active: dict[ThreadKey, _Active] = {}

    # -- queue --------------------------------------------------------------------------

    async def enqueue(self, message: Incoming) -> bool:
        """Stores the message and makes sure its thread's worker runs; False if seen before.

        Slack waits for this (the ack follows it): plain Core INSERTs, since building the ORM
        rows took more of the ack's CPU than the database did."""
        now = self._clock.now()
        row = {
            "team_id": message.key.team_id,
            "channel_id": message.key.channel_id,
            "thread_ts": message.key.thread_ts,
            "reply_thread_ts": message.reply_thread_ts,
            "message_ts": message.message_ts,
            "user_id": message.user_id,
            "text": message.text,
            "files": message.files,
            "status": "pending",
            "created_at": now,
        }
        try:
            async with self._db.session() as session:
                await session.exec(insert(_QUEUED), params=row)
                if message.event_id:
                    event = {"event_id": message.event_id, "received_at": now}
                    await session.exec(insert(_PROCESSED), params=event)
        except IntegrityError:
            EVENTS.labels(outcome="duplicate").inc()
            return False  # the same Slack message again (retry, or mention + message)
        EVENTS.labels(outcome="queued").inc()
        self._kick(message.key)
        return True

    async def seen(self, event_id: str) -> bool:
        """Whether a Slack event was already taken (`enqueue` stores its id with its message).

        Every delivery pays for this read before its ack: Core on a plain connection, half the
        CPU of an ORM session (`python -m bench.sql_cost`)."""
        async with self._db.engine.connect() as conn:
            return (await conn.execute(_SEEN, {"event_id": event_id})).first() is not None

    async def resume(self) -> None:
        """Starts workers for waiting messages nobody answers: accepted by a process that
        stopped (this one before a restart, or another replica), or whose worker failed."""
        for key in await self._claims.unclaimed():
            self._kick(ThreadKey(*key))

    def _renew_claims(self, connection: Connection, until: float) -> None:
        held = self._held
        if held:
            self._claims.renew(connection, until, held)

    async def pending(self, key: ThreadKey) -> int:
        """How many messages of the conversation wait for their answer."""
        async with self._db.session() as session:
            statement = select(func.count()).select_from(_pending(key).subquery())
            return int((await session.exec(statement)).one())

    async def drain(self, grace: float) -> None:
        """Graceful shutdown: takes no new conversations, lets the answers in flight finish
        within `grace` seconds, and hands the rest of each queue to the other replicas."""
        self._draining = True
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=grace)

    async def close(self) -> None:
        self._draining = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def idle(self) -> None:
        """Waits until every queued message has been answered (tests, shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    def _kick(self, key: ThreadKey) -> None:
        if self._draining:
            return  # the message is stored: another replica's sweep answers it
        self._kicked.add(key)
        if key not in self._workers:
            worker = asyncio.create_task(self._drain(key), name=f"conversation {key}")
            self._workers[key] = worker
            self._held = tuple(self._workers)
            worker.add_done_callback(lambda _t: self._forget(key))

    def _forget(self, key: ThreadKey) -> None:
        self._workers.pop(key, None)
        self._held = tuple(self._workers)

    async def _drain(self, key: ThreadKey) -> None:
        """Answers the conversation's queue while this process holds its claim.

        A database error ends the worker without releasing the claim; nobody renews it, so it
        lapses and a sweep (here or on another replica) starts a new worker later.
        """
        try:
            claim = await self._claims.take(key)
            if claim is None:
                return  # another replica answers this conversation; it sees the new message
            # Taken from a process that stopped: its last answer may be half done.
            resuming = claim == "taken over"
            try:
                while not self._draining:
                    self._kicked.discard(key)
                    async with self._db.session() as session:
                        row = (await session.exec(_pending(key).limit(1))).first()
                    if row is not None:
                        await self._answer_queued(key, row, resuming)
                        resuming = False
                        continue
                    if key in self._kicked:  # enqueued while we were looking: look again
                        continue
                    # Release, then look once more: a message stored by another replica in
                    # between is seen here, or its replica finds the claim free and takes it.
                    await self._claims.release(key)
                    if await self.pending(key) == 0 or not await self._claims.take(key):
                        return
            finally:
                if self._draining:
                    await self._claims.release(key)
        except DATABASE_UNAVAILABLE as exc:
            self._engine.heartbeat.database_trouble()
            log.warning(
                "conversation worker stopped by a database error (%s); it will be resumed",
                type(exc).__name__,
                extra={"channel": key.channel_id, "thread_ts": key.thread_ts},
            )

    async def _answer_queued(self, key: ThreadKey, row: QueuedMessageRow, resuming: bool) -> None:
        status = "failed"
        try:
            with ANSWER_SECONDS.time():
                outcome = await self._answer(key, row, resuming)
            ANSWERS.labels(status=outcome.status if outcome else "refused").inc()
            status = "done"
        except asyncio.CancelledError:
            raise
        except DATABASE_UNAVAILABLE:
            raise  # not the answer's fault: the message stays pending for a retry
        except Exception:
            ANSWERS.labels(status="error").inc()
            log.exception(
                "answering failed",
                extra={"channel": key.channel_id, "thread_ts": row.reply_thread_ts},
            )
        await self._mark(row, status)

    async def _mark(self, row: QueuedMessageRow, status: str) -> None:
        """Records the answer. The reply is already in Slack, so this write is retried through
        a short database outage rather than risking the message being answered twice."""
        for attempt in range(120):
            try:
                async with self._db.session() as session:
                    await session.exec(
                        update(QueuedMessageRow)
                        .where(
                            col(QueuedMessageRow.seq) == row.seq,
                            col(QueuedMessageRow.status) == "pending",
                        )
                        .values(status=status)
                    )
                return
            except DATABASE_UNAVAILABLE:
                self._engine.heartbeat.database_trouble()
                if attempt == 119:
                    raise
                await asyncio.sleep(0.5)

    # -- one answer ---------------------------------------------------------------------

    async def _answer(
        self, key: ThreadKey, row: QueuedMessageRow, resuming: bool = False
    ) -> RunOutcome | None:
        reply = SlackReply(
            self._client,
            channel=key.channel_id,
            thread_ts=row.reply_thread_ts,
            user_id=row.user_id,
            team_id=key.team_id,
            pacer=self._pacer,
            interval=self._options.interval,
        )
        status_task = asyncio.create_task(reply.set_status("is thinking…"))
        stop_button: asyncio.Task[None] | None = None
        # A mention without `files`: look the message up while its engine thread is set up
        # (one Slack round trip off every mention's first text). Outside the start slot: it may
        # wait a minute for Slack's budget, and slots held by waiting look-ups would stall the
        # answers ready to start.
        lookup = (
            asyncio.create_task(
                self._files.lookup(key.channel_id, row.reply_thread_ts, row.message_ts)
            )
            if row.files is None
            else None
        )
        try:
            async with self._starting:
                link = await self.link(key, create=True)
            files = row.files if lookup is None else await lookup
            message = await self._user_message(row, files or [])
            assert link is not None
            assistant_name = link.assistant_name
            if self._directory.find(assistant_name) is None:  # removed from assistants.yml
                assistant_name = await self._directory.chosen(key.team_id, key.channel_id)
            incoming = Incoming(key, row.reply_thread_ts, row.message_ts, row.user_id, row.text)
            # The run says which Slack message it answers: a replica taking the conversation
            # over finds it there (no extra write per answer, and no window where it is not
            # noted).
            params = RunCreate(
                assistant_id=self._directory.id_for(assistant_name),
                additional_messages=[message],
                metadata={"slack_ts": row.message_ts},
            )
            active = self.active[key] = _Active(link.engine_thread_id)
            try:
                begun = await self._begun(link.engine_thread_id, row) if resuming else None
                if begun is not None:  # a process that stopped began it: follow it to its end
                    events = await self._engine.runs.follow(begun)
                else:
                    events = await self._create_run(link.engine_thread_id, params)
            except EngineError as exc:
                await reply.fail(friendly_error(exc))
                return None

            def on_run(run_id: str) -> None:
                nonlocal stop_button
                active.run_id = run_id
                stop_button = asyncio.create_task(self._offer_stop(row, link, run_id))

            return await self._driver.drive(
                link.engine_thread_id, events, reply, self._context(incoming), on_run=on_run
            )
        except DATABASE_UNAVAILABLE:
            raise  # not the answer's fault: the message stays pending, answered on retry
        except Exception:
            await self._apologise(reply)
            raise
        finally:
            # Whatever ends the answer (done, failed, cancelled at shutdown), nothing it
            # started outlives it.
            self.active.pop(key, None)
            for task in (status_task, lookup, stop_button):
                if task is not None and not task.done():
                    task.cancel()

    async def _user_message(
        self, row: QueuedMessageRow, files: list[dict[str, Any]]
    ) -> MessageCreate:
        """The user's words, with the files they shared attached (downloaded from Slack, in
        a start slot: downloads are part of setting an answer up)."""
        taken: list[TakenFile] = []
        problems: list[str] = []
        if files:
            async with self._starting:
                taken, problems = await self._files.take(files)
        text = row.text
        if taken:
            names = ", ".join(f.name for f in taken)
            text = f"{text}\n\n(shared files: {names})" if text else f"(shared files: {names})"
        if problems:
            text += "\n\n(note: " + "; ".join(problems) + ")"
        attachments = [
            {"file_id": f.file_id, "tools": [{"type": tool} for tool in f.tools]} for f in taken
        ]
        return MessageCreate.model_validate(
            {
                "role": "user",
                "content": text.strip() or "(empty message)",
                "attachments": attachments or None,
                "metadata": {"slack_user": row.user_id, "slack_ts": row.message_ts},
            }
        )

    async def _begun(self, thread_id: str, row: QueuedMessageRow) -> str | None:
        """The run a stopped process created for this message, if it got that far."""
        latest = await self._engine.runs.list(thread_id, ListQuery(limit=1))
        for run in latest.data:
            if (run.metadata or {}).get("slack_ts") == row.message_ts:
                return run.id
        return None

    async def _create_run(self, thread_id: str, params: RunCreate) -> Any:
        """Creates the run, waiting out a run someone else started on the same engine thread."""
        for _ in range(600):
            try:
                async with self._starting:
                    return await self._engine.runs.create_stream(thread_id, params)
            except Conflict:
                await asyncio.sleep(1.0)
        raise Conflict("The conversation is busy; please try again.")

    async def _offer_stop(self, row: QueuedMessageRow, link: SlackThreadRow, run_id: str) -> None:
        await asyncio.sleep(self._options.stop_button_after)
        from bot.listeners.actions import stop_button_blocks

        if not self._pacer.ready("chat.postEphemeral", row.channel_id):
            log.info("stop button not offered: chat.postEphemeral's rate limit is spent")
            return
        try:
            await self._client.chat_postEphemeral(
                channel=row.channel_id,
                user=row.user_id,
                thread_ts=row.reply_thread_ts,
                text="Still working on it. You can stop this answer.",
                blocks=stop_button_blocks(link.engine_thread_id, run_id),
            )
        except Exception as exc:  # only a convenience: never let it disturb the answer
            log.info("could not offer a stop button: %s", exc)

    async def _apologise(self, reply: SlackReply) -> None:
        """Ends a failed answer with an apology after what it showed (and the text it had not
        written yet), or, if Slack refuses that too, posts the apology on its own."""
        try:
            await reply.fail(_APOLOGY)
            return
        except Exception as exc:
            log.warning("could not end the answer with an apology (%s)", type(exc).__name__)
        try:
            await self._client.chat_postMessage(
                channel=reply.channel, thread_ts=reply.thread_ts, text=_APOLOGY
            )
        except Exception:
            log.exception("could not post the apology", extra={"channel": reply.channel})

    # -- thread links -------------------------------------------------------------------

    async def link(self, key: ThreadKey, *, create: bool = False) -> SlackThreadRow | None:
        """The engine thread behind a Slack conversation (made on first use when `create`)."""
        async with self._db.session() as session:
            row = (await session.exec(_link(key))).first()
        if row is not None:
            try:
                await self._engine.threads.retrieve(row.engine_thread_id)
                return row
            except NotFound:  # deleted through the API: start over
                await self.forget(key)
        if not create:
            return None
        name = await self._directory.chosen(key.team_id, key.channel_id)
        thread = await self._engine.threads.create(
            ThreadCreate(
                metadata={
                    "slack_team": key.team_id,
                    "slack_channel": key.channel_id,
                    "slack_thread_ts": key.thread_ts,
                }
            )
        )
        row = SlackThreadRow(
            team_id=key.team_id,
            channel_id=key.channel_id,
            thread_ts=key.thread_ts,
            engine_thread_id=thread.id,
            assistant_name=name,
            created_at=self._clock.now(),
        )
        try:
            async with self._db.session() as session:
                session.add(row)
        except IntegrityError:  # made concurrently (another replica): use theirs
            async with self._db.session() as session:
                return (await session.exec(_link(key))).one()
        return row

    async def follows(self, key: ThreadKey) -> bool:
        """Whether the bot takes part in this Slack thread."""
        async with self._db.session() as session:
            return (await session.exec(_link(key))).first() is not None

    async def forget(self, key: ThreadKey) -> None:
        """The next message in this conversation starts a fresh engine thread."""
        async with self._db.session() as session:
            row = (await session.exec(_link(key))).first()
            if row is not None:
                await session.delete(row)

    async def switch(self, key: ThreadKey, assistant_name: str) -> None:
        async with self._db.session() as session:
            row = (await session.exec(_link(key))).first()
            if row is not None:
                row.assistant_name = assistant_name
                session.add(row)


_QUEUED = QueuedMessageRow.__table__  # type: ignore[attr-defined]
_PROCESSED = ProcessedEventRow.__table__  # type: ignore[attr-defined]
_SEEN = select(_PROCESSED.c.event_id).where(_PROCESSED.c.event_id == bindparam("event_id"))


def _link(key: ThreadKey) -> Any:
    return select(SlackThreadRow).where(
        col(SlackThreadRow.team_id) == key.team_id,
        col(SlackThreadRow.channel_id) == key.channel_id,
        col(SlackThreadRow.thread_ts) == key.thread_ts,
    )


def _pending(key: ThreadKey) -> Any:
    return (
        select(QueuedMessageRow)
        .where(
            col(QueuedMessageRow.team_id) == key.team_id,
            col(QueuedMessageRow.channel_id) == key.channel_id,
            col(QueuedMessageRow.thread_ts) == key.thread_ts,
            col(QueuedMessageRow.status) == "pending",
        )
        .order_by(col(QueuedMessageRow.seq))
    )
