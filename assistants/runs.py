"""Runs and run steps: create (also with a new thread), stream, cancel, submit tool outputs,
expire; list and retrieve. State changes go through `RunLifecycle`; model work through `Runner`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import RunStep
from sqlmodel import col, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.artifacts import RunArtifacts, load_artifacts
from assistants.assistants import load_assistant
from assistants.clock import Clock
from assistants.errors import Conflict, InvalidRequest, NotFound
from assistants.event_log import EventLog
from assistants.events import EventHub, StreamEvent
from assistants.ids import new_id
from assistants.lifecycle import TERMINAL_STATUSES, RunChanged, RunLifecycle
from assistants.locking import ACTIVE_RUN_STATUSES, ThreadLocks, active_run, load_thread
from assistants.messages import new_message_row
from assistants.pagination import Page, paginate
from assistants.params import (
    ListQuery,
    MetadataUpdate,
    RunCreate,
    SubmitToolOutputs,
    ThreadAndRunCreate,
    ThreadCreate,
)
from assistants.runner import Runner
from assistants.threads import ThreadService
from assistants.wire import run_wire, step_wire, thread_wire
from storage import AssistantRow, Database, RunRow, RunStepRow

__all__ = ["RUN_LIFETIME", "SEARCH_CONTENT", "RunService"]

#: Seconds a run may stay unfinished before it expires (hosted: created_at + 600).
RUN_LIFETIME = 600
_ABANDONED = {
    "code": "server_error",
    "message": "The server working on this run stopped before it finished. Please try again.",
}
#: The `include[]` value that adds file_search result text to tool call steps.
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


class RunService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        locks: ThreadLocks,
        events: EventHub,
        lifecycle: RunLifecycle,
        runner: Runner,
        threads: ThreadService,
        log: EventLog,
        steady: Callable[[], bool] = lambda: True,
    ) -> None:
        self._db, self._clock, self._locks, self._events, self._log = db, clock, locks, events, log
        self._lifecycle, self._runner, self._threads = lifecycle, runner, threads
        self._steady = steady

    # -- create -------------------------------------------------------------------------

    async def create(self, thread_id: str, params: RunCreate) -> Run:
        row = await self._create(thread_id, params)
        await self._launch(row)
        return run_wire(row)

    async def create_stream(self, thread_id: str, params: RunCreate) -> AsyncIterator[StreamEvent]:
        """Creates the run (errors raise here) and returns its events until it pauses or ends."""
        return await self._launch(await self._create(thread_id, params))

    async def create_thread_and_run(self, params: ThreadAndRunCreate) -> Run:
        row = await self._create_with_thread(params)
        await self._launch(row)
        return run_wire(row)

    async def create_thread_and_run_stream(
        self, params: ThreadAndRunCreate
    ) -> AsyncIterator[StreamEvent]:
        return await self._launch(await self._create_with_thread(params, announce_thread=True))

    async def follow(self, run_id: str, start: int = 0) -> AsyncIterator[StreamEvent]:
        """The events of a run working anywhere (this process or another), from `start` in
        its durable log, until it pauses or ends (not part of the REST API: the bot uses it to
        pick up an answer another replica began)."""
        return self._log.follow(run_id, start)

    async def _launch(self, row: RunRow) -> AsyncIterator[StreamEvent]:
        """Executes a just created run here when this process has room (streaming from
        memory); otherwise hands it to another worker and streams it from the durable log."""
        if self._runner.has_room():
            events = self._events.log(row.id).follow(0)
            self._runner.start(row.id)
            return events
        await self._hand_over(row.id)
        return self._log.follow(row.id, 0)

    async def _hand_over(self, run_id: str) -> None:
        """Lets another worker take a queued run: its events so far are written first (so the
        next ones follow them), then the short hold this process kept on it is released."""
        await self._log.flush()
        async with self._db.session() as session:
            await session.exec(
                update(RunRow)
                .where(
                    col(RunRow.id) == run_id,
                    col(RunRow.worker_id) == self._lifecycle.lease.worker_id,
                    col(RunRow.status) == "queued",
                )
                .values(worker_id=None, lease_expires_at=None)
            )

    async def _create(self, thread_id: str, params: RunCreate) -> RunRow:
        async with self._locks.hold(thread_id):
            async with self._db.session() as session:
                await load_thread(session, thread_id, for_update=True)
                running = await active_run(session, thread_id)
                if running is not None:
                    raise Conflict(f"Thread {thread_id} already has an active run {running.id}.")
                assistant = await _assistant(session, params.assistant_id)
                now = self._clock.now()
                for message in params.additional_messages or []:
                    session.add(new_message_row(thread_id, message, now))
                row = self._new_run(thread_id, assistant, params, params.additional_instructions)
                session.add(row)
            self._log.begin(row.id)
            self._announce(row)
            return row

    async def _create_with_thread(
        self, params: ThreadAndRunCreate, *, announce_thread: bool = False
    ) -> RunRow:
        thread_params = params.thread or ThreadCreate()
        if params.tool_resources is not None and thread_params.tool_resources is None:
            thread_params = thread_params.model_copy(
                update={"tool_resources": params.tool_resources}
            )
        async with self._db.session() as session:
            assistant = await _assistant(session, params.assistant_id)
            thread = await self._threads.create_in(session, thread_params)
            row = self._new_run(thread.id, assistant, params, None)
            session.add(row)
        self._log.begin(row.id)
        if announce_thread:
            self._events.publish(row.id, "thread.created", thread_wire(thread))
        self._announce(row)
        return row

    def _new_run(
        self,
        thread_id: str,
        assistant: AssistantRow,
        params: RunCreate | ThreadAndRunCreate,
        additional_instructions: str | None,
    ) -> RunRow:
        instructions = (
            params.instructions if params.instructions is not None else assistant.instructions
        ) or ""
        if additional_instructions:
            instructions = f"{instructions}\n\n{additional_instructions}".strip()
        tools = (
            [t.model_dump(mode="json", exclude_unset=True) for t in params.tools]
            if params.tools is not None
            else assistant.tools
        )
        tool_choice = _dump(params.tool_choice)
        _check_tool_choice(tool_choice, tools)
        now = self._clock.now()
        row = RunRow(
            id=new_id("run"),
            thread_id=thread_id,
            assistant_id=assistant.id,
            created_at=now,
            expires_at=now + RUN_LIFETIME,
            status="queued",
            model=params.model or assistant.model,
            instructions=instructions,
            tools=tools,
            meta=params.metadata or {},
            temperature=_first(params.temperature, assistant.temperature),
            top_p=_first(params.top_p, assistant.top_p),
            max_prompt_tokens=params.max_prompt_tokens,
            max_completion_tokens=params.max_completion_tokens,
            truncation_strategy=_dump(params.truncation_strategy)
            or {"type": "auto", "last_messages": None},
            tool_choice=tool_choice or "auto",
            parallel_tool_calls=_first(params.parallel_tool_calls, True),
            response_format=_dump(params.response_format) or assistant.response_format,
        )
        # Held by this worker from the start (so no other takes it before it begins), also
        # when it will be handed over: then its first events are written before the hold ends.
        self._lifecycle.lease.grant(row)
        return row

    def _announce(self, row: RunRow) -> None:
        self._lifecycle.publish_run(row, "thread.run.created")
        self._lifecycle.publish_run(row, "thread.run.queued")

    # -- read and modify ---------------------------------------------------------------

    async def retrieve(self, thread_id: str, run_id: str) -> Run:
        async with self._db.session() as session:
            row = await _load(session, thread_id, run_id)
        return run_wire(await self._expire_if_due(row))

    async def list(self, thread_id: str, query: ListQuery) -> Page[Run]:
        async with self._db.session() as session:
            await load_thread(session, thread_id)
            page = await paginate(session, RunRow, query, [col(RunRow.thread_id) == thread_id])
        return Page([run_wire(await self._expire_if_due(row)) for row in page.data], page.has_more)

    async def update(self, thread_id: str, run_id: str, params: MetadataUpdate) -> Run:
        async with self._db.session() as session:
            row = await _load(session, thread_id, run_id)
            if "metadata" in params.model_fields_set:
                row.meta = params.metadata or {}
            session.add(row)
        return run_wire(row)

    async def list_steps(
        self, thread_id: str, run_id: str, query: ListQuery, include: Sequence[str] = ()
    ) -> Page[RunStep]:
        with_content = _include(include)
        async with self._db.session() as session:
            await _load(session, thread_id, run_id)
            page = await paginate(session, RunStepRow, query, [col(RunStepRow.run_id) == run_id])
        steps = [step_wire(row, include_search_content=with_content) for row in page.data]
        return Page(steps, page.has_more)

    async def retrieve_step(
        self, thread_id: str, run_id: str, step_id: str, include: Sequence[str] = ()
    ) -> RunStep:
        with_content = _include(include)
        async with self._db.session() as session:
            await _load(session, thread_id, run_id)
            statement = select(RunStepRow).where(
                col(RunStepRow.id) == step_id, col(RunStepRow.run_id) == run_id
            )
            row = (await session.exec(statement)).first()
        if row is None:
            raise NotFound("run step", step_id)
        return step_wire(row, include_search_content=with_content)

    async def artifacts(self, thread_id: str, run_id: str) -> RunArtifacts:
        """Sources, code and files of the run's built-in tool calls (not part of the REST API)."""
        async with self._db.session() as session:
            await _load(session, thread_id, run_id)
        return await load_artifacts(self._db, run_id)

    # -- control -----------------------------------------------------------------------

    async def cancel(self, thread_id: str, run_id: str) -> Run:
        async with self._db.session() as session:
            row = await _load(session, thread_id, run_id)
        row = await self._expire_if_due(row)
        if row.status in TERMINAL_STATUSES or row.status == "cancelling":
            raise InvalidRequest(f"Cannot cancel run with status '{row.status}'.")
        try:
            cancelling = await self._lifecycle.set_status(run_id, "cancelling")
        except RunChanged as changed:  # it ended, or another cancel came first, meanwhile
            raise InvalidRequest(f"Cannot cancel run with status '{changed.status}'.") from None
        if self._lifecycle.lease.held_elsewhere(cancelling):
            return run_wire(cancelling)  # its worker sees `cancelling` and ends it
        await self._runner.stop(run_id, status="cancelled")
        # A run stopped before its task began (or parked in requires_action) ends here.
        await self._lifecycle.finish(run_id, "cancelled")
        return run_wire(cancelling)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> Run:
        row, events, step_id = await self._accept_outputs(thread_id, run_id, params)
        await self._resume(row, events, step_id)
        return run_wire(row)

    async def submit_tool_outputs_stream(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> AsyncIterator[StreamEvent]:
        row, events, step_id = await self._accept_outputs(thread_id, run_id, params)
        return await self._resume(row, events, step_id)

    async def _resume(
        self, row: RunRow, events: AsyncIterator[StreamEvent], step_id: str
    ) -> AsyncIterator[StreamEvent]:
        """Executes the run whose outputs were accepted here when this process has room
        (streaming `events`, from memory); otherwise hands it over and streams the durable log
        from the event that completed step `step_id`, wherever the log placed it."""
        if self._runner.has_room():
            self._runner.start(row.id)
            return events
        stored_start = await self._log.position_of(row.id, "thread.run.step.completed", step_id)
        await self._hand_over(row.id)
        return self._log.follow(row.id, stored_start)

    async def _accept_outputs(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> tuple[RunRow, AsyncIterator[StreamEvent], str]:
        """Checks and stores the outputs; returns the queued run, its events in memory from the
        first new one on (followed before that one is published, so it is kept) and the id of
        the step the outputs completed (that event's subject). The log is followed only once
        the outputs are accepted: doing it up front created an event log for any rejected run
        id, one that nothing ever removed."""
        async with self._locks.hold(thread_id):
            async with self._db.session() as session:
                row = await _load(session, thread_id, run_id)
            row = await self._expire_if_due(row)
            if row.status != "requires_action" or row.required_action is None:
                raise InvalidRequest(f'Runs in status "{row.status}" do not accept tool outputs.')
            pending = [c["id"] for c in row.required_action["submit_tool_outputs"]["tool_calls"]]
            given = [output.tool_call_id for output in params.tool_outputs]
            if sorted(given) != sorted(pending):
                raise InvalidRequest(
                    f"Expected tool outputs for call_ids {pending}, got {given}.",
                    param="tool_outputs",
                )
            outputs = {o.tool_call_id: o.output for o in params.tool_outputs}
            now = self._clock.now()
            async with self._db.session() as session:
                step = await _waiting_step(session, run_id)
                calls = [dict(call) for call in step.step_details["tool_calls"]]
                for call in calls:
                    if call["id"] in outputs:
                        call["function"] = {**call["function"], "output": outputs[call["id"]]}
                step.step_details = {"type": "tool_calls", "tool_calls": calls}
                step.status = "completed"
                step.completed_at = now
                session.add(step)
            run_log = self._events.log(run_id)
            events = run_log.follow(run_log.position)
            self._events.publish(run_id, "thread.run.step.completed", step_wire(step))
            try:
                queued = await self._lifecycle.set_status(run_id, "queued", execute=True)
                return queued, events, step.id
            except RunChanged as changed:  # cancelled or expired meanwhile (no thread lock)
                raise InvalidRequest(
                    f'Runs in status "{changed.status}" do not accept tool outputs.'
                ) from None

    async def expire_due(self) -> int:
        """Expires every unfinished run past its `expires_at`; returns how many."""
        now = self._clock.now()
        async with self._db.session() as session:
            statement = select(RunRow).where(
                col(RunRow.status).in_(ACTIVE_RUN_STATUSES), col(RunRow.expires_at) <= now
            )
            due = (await session.exec(statement)).all()
        due = [row for row in due if not self._lifecycle.lease.held_elsewhere(row)]
        for row in due:  # a run another live worker executes is expired by that worker
            await self._expire(row.id)
        return len(due)

    async def stop_thread_runs(self, thread_id: str) -> None:
        """Cancels whatever runs on a thread that is being deleted."""
        async with self._db.session() as session:
            row = await active_run(session, thread_id)
        if row is not None:
            await self._runner.stop(row.id, status="cancelled")
            await self._lifecycle.finish(row.id, "cancelled")

    async def take_over(self) -> int:
        """Takes the runs whose worker stopped renewing its lease (killed, or its task died):
        a queued one is executed here, one in progress ends `failed` with a message (its
        half-streamed answer cannot be resumed faithfully), one being cancelled ends
        `cancelled`. Every process runs this; the row lock of each move makes one of them win.
        Returns how many runs were taken."""
        if not self._steady():
            return 0  # the database was away: give the holders time to renew first
        lease = self._lifecycle.lease
        async with self._db.session() as session:
            statement = (
                select(RunRow.id, RunRow.status)
                .where(
                    col(RunRow.status).in_(("queued", "in_progress", "cancelling")),
                    or_(
                        col(RunRow.lease_expires_at).is_(None),
                        col(RunRow.lease_expires_at) < lease.now(),
                    ),
                )
                .order_by(col(RunRow.seq))
                .limit(100)
                .with_for_update(skip_locked=True)
            )
            abandoned = (await session.exec(statement)).all()
        taken = 0
        for run_id, status in abandoned:
            if status == "queued":
                if self._runner.has_room() and not self._runner.is_running(run_id):
                    self._runner.start(run_id)
                    taken += 1
            elif status == "in_progress":
                await self._lifecycle.finish(
                    run_id, "failed", last_error=_ABANDONED, if_abandoned=True
                )
                taken += 1
            else:
                await self._lifecycle.finish(run_id, "cancelled", if_abandoned=True)
                taken += 1
        return taken

    async def _expire_if_due(self, row: RunRow) -> RunRow:
        if self._lifecycle.lease.held_elsewhere(row):
            return row  # its worker expires it
        if row.status in ACTIVE_RUN_STATUSES and row.expires_at is not None:
            if row.expires_at <= self._clock.now():
                return await self._expire(row.id)
        return row

    async def _expire(self, run_id: str) -> RunRow:
        await self._runner.stop(run_id, status="expired")
        return await self._lifecycle.finish(run_id, "expired")


async def _load(session: AsyncSession, thread_id: str, run_id: str) -> RunRow:
    statement = select(RunRow).where(col(RunRow.id) == run_id, col(RunRow.thread_id) == thread_id)
    row = (await session.exec(statement)).first()
    if row is None:
        await load_thread(session, thread_id)  # a missing thread is named first
        raise NotFound("run", run_id)
    return row


async def _waiting_step(session: AsyncSession, run_id: str) -> RunStepRow:
    statement = (
        select(RunStepRow)
        .where(
            col(RunStepRow.run_id) == run_id,
            col(RunStepRow.type) == "tool_calls",
            col(RunStepRow.status) == "in_progress",
        )
        .order_by(col(RunStepRow.seq).desc())
    )
    return (await session.exec(statement)).one()


async def _assistant(session: AsyncSession, assistant_id: str) -> AssistantRow:
    try:
        return await load_assistant(session, assistant_id)
    except NotFound as exc:
        raise NotFound("assistant", assistant_id, param="assistant_id") from exc


def _include(include: Sequence[str]) -> bool:
    for value in include:
        if value != SEARCH_CONTENT:
            raise InvalidRequest(
                f"Invalid 'include[]': unsupported value '{value}'. "
                f"Supported values are: ['{SEARCH_CONTENT}'].",
                param="include",
            )
    return bool(include)


def _check_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    if not isinstance(choice, dict):
        return
    if choice["type"] == "function":
        name = (choice.get("function") or {}).get("name")
        names = {t["function"]["name"] for t in tools if t["type"] == "function"}
        if name not in names:
            raise InvalidRequest(
                f"Invalid 'tool_choice': no function named '{name}' among the run's tools.",
                param="tool_choice",
            )
    elif not any(t["type"] == choice["type"] for t in tools):
        raise InvalidRequest(
            f"Invalid 'tool_choice': the run has no '{choice['type']}' tool.", param="tool_choice"
        )


def _dump(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return value.model_dump(mode="json", exclude_none=True, by_alias=True)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
