"""The Slack bot: a Bolt `AsyncApp` wired to the engine, the conversations and the handlers.

bot = await Bot.start(runtime)      # syncs assistants.yml, resumes queued messages
response = await bot.dispatch(request)
await bot.close()
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from sqlmodel import col, delete

from assistants import Clock, Engine, Scheduler
from bot.assistants_file import load_assistants_file, sync_assistants
from bot.conversations import Conversations, Incoming, ReplyOptions
from bot.directory import AssistantDirectory
from bot.driver import RunDriver
from bot.functions import FunctionContext, builtin_functions
from bot.listeners import register_all
from bot.metrics import RUNS_ACTIVE
from bot.reminders import Reminders
from bot.runtime import Runtime
from bot.slack_files import SharedFiles
from bot.slack_pacing import SLACK_LIMITS, PacedWebClient, SlackPacer
from storage import Database, ProcessedEventRow

__all__ = ["Bot", "slack_client"]

log = logging.getLogger("bot.app")

#: Seconds a processed event id is remembered (Slack retries within minutes).
EVENT_MEMORY = 24 * 3600


def slack_client(token: str, base_url: str, *, pacer: SlackPacer | None = None) -> PacedWebClient:
    """The Web API client: every call keeps to Slack's published limits (`pacer`; none given:
    unpaced); a 429 all the same waits out `Retry-After`, dropped connections are retried.

    Its calls share one aiohttp session (kept-alive connections): without one, slack_sdk opens
    a new session and TCP connection for every call.
    """
    return PacedWebClient(
        pacer=pacer or SlackPacer(limits={}),
        token=token,
        base_url=base_url,
        timeout=30,
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


class Bot:
    def __init__(
        self,
        *,
        runtime: Runtime,
        app: AsyncApp,
        client: PacedWebClient,
        directory: AssistantDirectory,
        conversations: Conversations,
        reminders: Reminders,
        scheduler: Scheduler,
    ) -> None:
        self.runtime, self.app, self.client = runtime, app, client
        self.directory, self.conversations, self.reminders = directory, conversations, reminders
        self._scheduler = scheduler
        self.engine: Engine = runtime.engine

    @classmethod
    async def start(
        cls,
        runtime: Runtime,
        *,
        options: ReplyOptions | None = None,
        clock: Clock | None = None,
    ) -> Bot:
        settings = runtime.settings
        options = options or ReplyOptions()
        assert settings.slack_bot_token is not None, "checked by settings.missing_for_slack()"
        secret = settings.slack_signing_secret
        clock = clock or runtime.engine.clock
        # Off (SLACK_PACING=false) for a Slack plan with higher limits than the published tiers.
        limits = SLACK_LIMITS if options.slack_limits is None else options.slack_limits
        pacer = SlackPacer(limits=limits if settings.slack_pacing else {})
        client = slack_client(
            settings.slack_bot_token.get_secret_value(), settings.slack_api_url, pacer=pacer
        )
        scheduler = Scheduler()
        reminders = Reminders(db=runtime.db, client=client, clock=clock, scheduler=scheduler)
        scheduler.add_job(
            _forget_old_events, "interval", hours=1, args=(runtime.db, clock), id="event-purge"
        )
        functions = builtin_functions(reminders=reminders)
        file = load_assistants_file(settings.assistants_file, functions.schemas())
        ids = await sync_assistants(runtime.engine, file)
        directory = AssistantDirectory(db=runtime.db, file=file, ids=ids, clock=clock)

        def context(message: Incoming) -> FunctionContext:
            return FunctionContext(
                team_id=message.key.team_id,
                channel_id=message.key.channel_id,
                thread_ts=message.reply_thread_ts,
                user_id=message.user_id,
                client=client,
                now=lambda: datetime.fromtimestamp(clock.now(), UTC),
            )

        conversations = Conversations(
            db=runtime.db,
            engine=runtime.engine,
            directory=directory,
            driver=RunDriver(engine=runtime.engine, functions=functions),
            client=client,
            pacer=pacer,
            clock=clock,
            files=SharedFiles(
                engine=runtime.engine,
                client=client,
                token=settings.slack_bot_token.get_secret_value(),
                max_bytes=settings.max_file_mb * 1024 * 1024,
            ),
            options=options,
            context=context,
        )
        app = AsyncApp(
            client=client,
            # Socket Mode needs no secret; /slack/events then rejects every request.
            signing_secret=secret.get_secret_value() if secret else "",
            logger=logging.getLogger("slack_bolt"),
            # Listeners only queue the message (milliseconds), so Slack's 200 goes out after
            # the message is stored: a crash before that makes Slack retry, never lose it.
            process_before_response=True,
            before_authorize=_shared_client(client),
        )
        bot = cls(
            runtime=runtime,
            app=app,
            client=client,
            directory=directory,
            conversations=conversations,
            reminders=reminders,
            scheduler=scheduler,
        )
        app.middleware(_once_per_event(conversations))
        register_all(app, bot)
        # Conversations whose messages nobody answers (their replica stopped) are picked up
        # by the sweep (the engine's heartbeat keeps the claims of those answered here alive).
        scheduler.add_job(
            conversations.resume, "interval", seconds=1.0, max_instances=1, coalesce=True
        )
        RUNS_ACTIVE.set_function(lambda: len(runtime.engine.runner.running))
        scheduler.start()
        await conversations.resume()
        return bot

    async def dispatch(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: Bolt verifies the signature, acks, and runs the listeners."""
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def close(self) -> None:
        """Graceful: answers in flight get the grace period (runs stopped after it end with a
        notice in Slack), the rest of every queue is left to the other replicas."""
        grace = self.runtime.settings.shutdown_grace_seconds
        await asyncio.gather(self.conversations.drain(grace), self.engine.drain(grace))
        await self.conversations.drain(5.0)  # time to post the notices of stopped runs
        await self._scheduler.stop()
        await self.conversations.close()
        if self.client.session is not None:
            await self.client.session.close()


def _shared_client(client: PacedWebClient) -> Any:
    """Listeners' `context.client` (and `say`, `set_status`, ...) is our paced client, so their
    calls count in the same budget: Bolt would give each request an unpaced client of its own.

    Bolt makes per-request copies in case a listener changes the token; ours never does.
    """

    async def shared_client(context: dict[str, Any], next: Any) -> None:
        context["client"] = client
        await next()

    return shared_client


def _once_per_event(conversations: Conversations) -> Any:
    """Slack retries reuse `event_id`: a delivery whose id is stored is acked only.

    The id is stored in the same transaction as the message it carried (see
    `Conversations.enqueue`), never before: a delivery that failed half-way (the database went
    away) leaves no id behind, so Slack's retry is processed instead of being lost.
    """

    async def once_per_event(
        body: dict[str, Any], context: dict[str, Any], next: Any
    ) -> BoltResponse | None:
        event_id = body.get("event_id")
        if event_id:
            if await conversations.seen(event_id):
                log.info("duplicate delivery of %s ignored", event_id, extra={"event_id": event_id})
                return BoltResponse(status=200, body="")
            context["event_id"] = event_id
        await next()
        return None

    return once_per_event


async def _forget_old_events(db: Database, clock: Clock) -> None:
    """Event ids older than a day can no longer be retried by Slack."""
    async with db.session() as session:
        await session.exec(
            delete(ProcessedEventRow).where(
                col(ProcessedEventRow.received_at) < clock.now() - EVENT_MEMORY
            )
        )
