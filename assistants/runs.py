"""Runs and run steps: create (also with a new thread), stream, cancel, submit tool outputs,
expire; list and retrieve. State changes go through `RunLifecycle`; model work through `Runner`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import RunStep
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.artifacts import RunArtifacts, load_artifacts
from assistants.assistants import load_assistant
from assistants.clock import Clock
from assistants.errors import Conflict, InvalidRequest, NotFound
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
    ) -> None:
        self._db, self._clock, self._locks, self._events = db, clock, locks, events
        self._lifecycle, self._runner, self._threads = lifecycle, runner, threads

    # -- create -------------------------------------------------------------------------

    async def create(self, thread_id: str, params: RunCreate) -> Run:
        row = await self._create(thread_id, params)
        self._runner.start(row.id)
        return run_wire(row)

    async def create_stream(self, thread_id: str, params: RunCreate) -> AsyncIterator[StreamEvent]:
        """Creates the run (errors raise here) and returns its events until it pauses or ends."""
        row = await self._create(thread_id, params)
        events = self._events.log(row.id).follow(0)
        self._runner.start(row.id)
        return events

    async def create_thread_and_run(self, params: ThreadAndRunCreate) -> Run:
        row = await self._create_with_thread(params)
        self._runner.start(row.id)
        return run_wire(row)

    async def create_thread_and_run_stream(
        self, params: ThreadAndRunCreate
    ) -> AsyncIterator[StreamEvent]:
        row = await self._create_with_thread(params, announce_thread=True)
        events = self._events.log(row.id).follow(0)
        self._runner.start(row.id)
        return events

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
        return RunRow(
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
        await self._runner.stop(run_id, status="cancelled")
        # A run stopped before its task began (or parked in requires_action) ends here.
        await self._lifecycle.finish(run_id, "cancelled")
        return run_wire(cancelling)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> Run:
        row, _start = await self._accept_outputs(thread_id, run_id, params)
        self._runner.start(run_id)
        return run_wire(row)

    async def submit_tool_outputs_stream(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> AsyncIterator[StreamEvent]:
        _row, start = await self._accept_outputs(thread_id, run_id, params)
        events = self._events.log(run_id).follow(start)
        self._runner.start(run_id)
        return events

    async def _accept_outputs(
        self, thread_id: str, run_id: str, params: SubmitToolOutputs
    ) -> tuple[RunRow, int]:
        """Checks and stores the outputs; returns the queued run and the position of its first
        new event. The position is taken only once the outputs are accepted: taking it up
        front created an event log for any rejected run id, one that nothing ever removed."""
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
            start = self._events.log(run_id).position
            self._events.publish(run_id, "thread.run.step.completed", step_wire(step))
            try:
                return await self._lifecycle.set_status(run_id, "queued"), start
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
        for row in due:
            await self._expire(row.id)
        return len(due)

    async def stop_thread_runs(self, thread_id: str) -> None:
        """Cancels whatever runs on a thread that is being deleted."""
        async with self._db.session() as session:
            row = await active_run(session, thread_id)
        if row is not None:
            await self._runner.stop(row.id, status="cancelled")
            await self._lifecycle.finish(row.id, "cancelled")

    async def _expire_if_due(self, row: RunRow) -> RunRow:
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
