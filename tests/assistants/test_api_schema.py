"""Property-based: the spec's Assistants operations, fuzzed against a live server.

For every `/assistants*` and `/threads*` operation of the official OpenAPI document
(`../shared/spec/openai-openapi.yaml`), schemathesis generates requests from the spec, both
valid (positive) and schema-violating (negative), and sends them to the real REST API over
HTTP. Every response must be:

- never a 5xx;
- a 2xx JSON body that validates against the spec's response schema, or an SSE stream (for
  `stream: true`) whose every event validates against the spec's `AssistantStreamEvent`;
- a 4xx body of exactly `{"error": {"message", "type", "param", "code"}}`.

Path parameters are mostly real ids from a small world built before each example set (an
assistant, an idle thread with a completed run, a thread whose run waits in
`requires_action`), so generation reaches the success paths instead of stopping at 404.

The spec is loaded once per session and cut down to these operations plus the components they
reference. Two deliberate changes to it, both documented at `_request_schemas`/`_SPEC_FIXES`:
request objects are closed (hosted refused unknown fields, the spec leaves nested objects open),
and the spec's known mistakes against the hosted API are corrected in the response schemas.

The generation is seeded (`API_FUZZ_SEED`, default 0) so CI runs are reproducible; explore
further with another seed and more examples, e.g.
`API_FUZZ_SEED=7 API_FUZZ_SCALE=5 pytest tests/assistants/test_api_schema.py`
(`API_FUZZ_VERBOSE=1 ... -s` prints every refused request with its answer).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import openai
import pytest
import requests
import schemathesis
import yaml
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.config import SchemathesisConfig
from sqlalchemy import text

from assistants import Engine, ManualClock
from assistants.api import api_app
from storage import Database
from tests.conftest import API_KEY
from tests.fakes.model_server import Reply, ToolCall, run_model_fake, text_reply, tool_calls_reply

pytestmark = pytest.mark.slow

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "spec" / "openai-openapi.yaml"

#: Every Assistants v2 operation of the spec except files and vector stores (not built yet).
OPERATIONS = [
    ("GET", "/assistants"),
    ("POST", "/assistants"),
    ("GET", "/assistants/{assistant_id}"),
    ("POST", "/assistants/{assistant_id}"),
    ("DELETE", "/assistants/{assistant_id}"),
    ("POST", "/threads"),
    ("POST", "/threads/runs"),
    ("GET", "/threads/{thread_id}"),
    ("POST", "/threads/{thread_id}"),
    ("DELETE", "/threads/{thread_id}"),
    ("GET", "/threads/{thread_id}/messages"),
    ("POST", "/threads/{thread_id}/messages"),
    ("GET", "/threads/{thread_id}/messages/{message_id}"),
    ("POST", "/threads/{thread_id}/messages/{message_id}"),
    ("DELETE", "/threads/{thread_id}/messages/{message_id}"),
    ("GET", "/threads/{thread_id}/runs"),
    ("POST", "/threads/{thread_id}/runs"),
    ("GET", "/threads/{thread_id}/runs/{run_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/steps"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"),
]

#: Examples per generation mode: operations with a body or a query take more than those that
#: take only ids. About 500 requests in all keep the module near half a minute.
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}
EXAMPLES_IDS_ONLY = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4}
SEED = int(os.environ.get("API_FUZZ_SEED", "0"))
SCALE = int(os.environ.get("API_FUZZ_SCALE", "1"))  # more examples when exploring locally
VERBOSE = bool(os.environ.get("API_FUZZ_VERBOSE"))  # print every refusal (run with `-s`)
TOOL = "lookup"  # the world's function tool; the model calls it when a user says LOOKUP
_REF = "#/components/schemas/"


# -- the spec -----------------------------------------------------------------------------


@functools.cache
def _full_spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"the OpenAPI spec is not beside the repository ({SPEC_PATH})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 1.5 s, not 20 s
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.load(handle, Loader=loader)
    return spec


def _spec_operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith(("/assistants", "/threads"))
        for method in item
        if method in ("get", "post", "delete", "put", "patch")
    ]


def _referenced(node: Any, schemas: dict[str, Any], found: dict[str, Any]) -> None:
    """Adds every component schema `node` reaches through `$ref` to `found`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            name = ref.removeprefix(_REF)
            if name not in found:
                found[name] = schemas[name]
                _referenced(schemas[name], schemas, found)
        for value in node.values():
            _referenced(value, schemas, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, schemas, found)


@functools.cache
def _subset() -> dict[str, Any]:
    """The Assistants operations and what they reference; corrected and request-closed."""
    spec = _full_spec()
    paths = copy.deepcopy(
        {path: item for path, item in spec["paths"].items() if path.startswith(OPERATION_PREFIXES)}
    )
    components = spec["components"]
    schemas: dict[str, Any] = {}
    _referenced(paths, components["schemas"], schemas)
    _referenced({"$ref": _REF + "AssistantStreamEvent"}, components["schemas"], schemas)
    responses = {}
    for item in paths.values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                ref = response.get("$ref", "")
                if ref.startswith("#/components/responses/"):
                    name = ref.rsplit("/", 1)[1]
                    responses[name] = components["responses"][name]
    _referenced(responses, components["schemas"], schemas)
    schemas = copy.deepcopy(schemas)
    for fix in _SPEC_FIXES:
        fix(schemas)
    subset = {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec["servers"],
        "security": spec["security"],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": copy.deepcopy(responses),
            "securitySchemes": spec["components"]["securitySchemes"],
        },
    }
    _request_schemas(subset)
    return subset


OPERATION_PREFIXES = ("/assistants", "/threads")


def _request_schemas(subset: dict[str, Any]) -> None:
    """Request bodies refer to closed copies (`*__request`) of the schemas they use.

    Hosted Assistants refused any unknown field ("Unrecognized request argument supplied"),
    as the engine does, but the spec closes only the top level of each body. Left open,
    nearly every generated body carries a random extra key deep inside and stops at 400; closed,
    generation reaches the engine's real work. Responses keep the spec's (open) schemas.
    """
    schemas = subset["components"]["schemas"]
    originals = dict(schemas)
    wanted: set[str] = set()
    for item in subset["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                _redirect(operation["requestBody"], wanted)
    pending = list(wanted)
    while pending:
        name = pending.pop()
        closed = copy.deepcopy(originals[name])
        more: set[str] = set()
        _redirect(closed, more)
        _close(closed)
        schemas[f"{name}__request"] = closed
        pending.extend(more - wanted)
        wanted |= more
    # Limits the spec states only in prose ("Must be a-z, A-Z, 0-9, or contain underscores and
    # dashes, with a maximum length of 64"), enforced by hosted and by the engine.
    pattern = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
    schemas["FunctionObject__request"]["properties"]["name"] = pattern
    json_schema = schemas["ResponseFormatJsonSchema__request"]["properties"]["json_schema"]
    json_schema["properties"]["name"] = pattern


def _redirect(node: Any, names: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF) and not ref.endswith("__request"):
            names.add(ref.removeprefix(_REF))
            node["$ref"] = ref + "__request"
        for value in node.values():
            _redirect(value, names)
    elif isinstance(node, list):
        for value in node:
            _redirect(value, names)


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


# The spec against the hosted API (and the SDK, which was generated from the hosted API):
# each correction names the difference. Only response schemas are affected.


def _list_ids_nullable(schemas: dict[str, Any]) -> None:
    """An empty list has `first_id`/`last_id` null on the hosted API (the SDK types them
    `Optional[str]`); the spec types them `string`."""
    for name, schema in schemas.items():
        if name.startswith("List") and name.endswith("Response"):
            for key in ("first_id", "last_id"):
                if key in schema.get("properties", {}):
                    schema["properties"][key] = {"anyOf": [{"type": "string"}, {"type": "null"}]}


_SPEC_FIXES: list[Callable[[dict[str, Any]], None]] = [_list_ids_nullable]


@functools.cache
def _stream_validators() -> dict[str, Any]:
    """Per event name, a validator of its `data`, from the spec's `AssistantStreamEvent`."""
    schemas = _nullable_as_union(_subset()["components"]["schemas"])
    validators = {}
    for group in schemas["AssistantStreamEvent"]["oneOf"]:
        group_schema = schemas[group["$ref"].removeprefix(_REF)]
        for variant in group_schema.get("oneOf", [group_schema]):
            event = variant["properties"]["event"]["enum"][0]
            data = variant["properties"]["data"]
            validators[event] = jsonschema_rs.validator_for(
                {**data, "components": {"schemas": schemas}}
            )
    return validators


def _nullable_as_union(node: Any) -> Any:
    """OpenAPI's `nullable: true` -> JSON Schema's `anyOf [.., null]` (schemathesis does the
    same for the response bodies it validates)."""
    if isinstance(node, dict):
        converted = {k: _nullable_as_union(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") is True:
            return {"anyOf": [converted, {"type": "null"}]}
        return converted
    if isinstance(node, list):
        return [_nullable_as_union(v) for v in node]
    return node


@functools.cache
def _schema(mode: GenerationMode) -> Any:
    """The loaded subset, with an explicit config (no `schemathesis.toml` is looked for).

    Positive examples leave NUL out of text: the engine refuses it (PostgreSQL cannot store it),
    and Hypothesis puts it into a quarter of all bodies, which would keep positive examples
    from ever reaching the engine's work. Negative examples keep it, so refusing it is tested.
    """
    config = SchemathesisConfig.from_dict({"generation": {"allow-x00": mode.is_negative}})
    return schemathesis.openapi.from_dict(_subset(), config=config)


# -- the world the fuzzer works in ----------------------------------------------------------


def _model_reply(request: dict[str, Any]) -> Reply:
    """Calls the world's function tool when a user asks for LOOKUP; else answers briefly."""
    tools = {t.get("function", {}).get("name") for t in request.get("tools") or []}
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    if TOOL in tools and last.get("role") == "user" and "LOOKUP" in json.dumps(last):
        return tool_calls_reply(ToolCall(TOOL, '{"q": "x"}'))
    return text_reply("ok")


@dataclass
class _World:
    """Real objects for path parameters, rebuilt when an example deleted or moved them.

    Two scenarios share one assistant: `idle` (a thread with a user message and a completed
    run, so nothing locks it) and `waiting` (a thread whose run waits in `requires_action`).
    """

    base: str
    session: requests.Session
    assistant: str | None = None
    ids: dict[str, dict[str, str]] = field(default_factory=dict)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, self.base + path, json=body, timeout=10)
        assert response.status_code == 200, (method, path, response.text)
        return response.json()

    def refresh(self) -> None:
        if self.assistant is None:
            created = self.call("POST", "/assistants", {"model": "m", "tools": [_TOOL]})
            self.assistant = created["id"]
            self.ids.clear()
        for name, content in (("idle", "hello"), ("waiting", "LOOKUP please")):
            if name not in self.ids:
                self.ids[name] = self._build(self.assistant, content)

    def forget(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        """Drops what a successful example deleted, finished or started a run on.

        Refused requests change nothing, so only 2xx answers are looked at.
        """
        if not 200 <= response.status_code < 300 or case.method.upper() == "GET":
            return
        path, given = case.operation.path, case.path_parameters or {}
        if path == "/assistants/{assistant_id}" and case.method.upper() == "DELETE":
            if given.get("assistant_id") == self.assistant:
                self.assistant = None
            return
        changes_thread = case.method.upper() == "DELETE" or path.endswith(
            ("/cancel", "/submit_tool_outputs", "/{thread_id}/runs")
        )
        if changes_thread:
            for name, ids in list(self.ids.items()):
                if given.get("thread_id") == ids["thread_id"]:
                    del self.ids[name]

    def _build(self, assistant: str, text: str) -> dict[str, str]:
        thread = self.call("POST", "/threads", {"messages": [{"role": "user", "content": text}]})
        message = self.call("GET", f"/threads/{thread['id']}/messages")["data"][0]["id"]
        # The run names its tools, so whatever an example did to the assistant, it still works.
        body: dict[str, Any] = {"assistant_id": assistant, "tools": [_TOOL], "stream": True}
        response = self.session.post(f"{self.base}/threads/{thread['id']}/runs", json=body)
        assert response.status_code == 200, response.text
        events = _sse_events(response.text)
        run = next(data for event, data in events if event == "thread.run.created")["id"]
        step = next(data for event, data in events if event == "thread.run.step.created")["id"]
        ids = {
            "assistant_id": assistant,
            "thread_id": thread["id"],
            "message_id": message,
            "run_id": run,
            "step_id": step,
        }
        for event, data in events:
            if event == "thread.run.requires_action":
                calls = data["required_action"]["submit_tool_outputs"]["tool_calls"]
                ids["call_id"] = calls[0]["id"]
        return ids


_TOOL = {"type": "function", "function": {"name": TOOL, "parameters": {"type": "object"}}}


def _sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        data = fields.get("data", "")
        events.append((fields.get("event", ""), data if data == "[DONE]" else json.loads(data)))
    return events


# -- checks -------------------------------------------------------------------------------

_ERROR_KEYS = {"message", "type", "param", "code"}


@dataclass
class _Tally:
    statuses: Counter[int] = field(default_factory=Counter)

    def check(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        status = response.status_code
        self.statuses[status] += 1
        if VERBOSE and status >= 400:
            print(status, case.method, case.formatted_path, case.body, response.text[:300])
        content_type = (response.headers.get("content-type") or [""])[0]
        if 200 <= status < 300 and content_type.startswith("text/event-stream"):
            _check_stream(response.text)
            return
        case.validate_response(
            response,
            checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        )
        if status >= 400:
            body = response.json()
            assert set(body) == {"error"}, body
            assert set(body["error"]) == _ERROR_KEYS, body
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
            assert isinstance(body["error"]["type"], str)


def _check_stream(text: str) -> None:
    """A `stream: true` answer: spec-valid events, ending with `done` / `[DONE]`."""
    events = _sse_events(text)
    assert events and events[-1] == ("done", "[DONE]"), events[-1:]
    validators = _stream_validators()
    for event, data in events:
        assert event in validators, f"not a spec event: {event}"
        errors = [
            f"{e.message} at {list(e.instance_path)}" for e in validators[event].iter_errors(data)
        ]
        assert not errors, (event, errors[:3], data)


# -- the live server -----------------------------------------------------------------------


class _LiveServer:
    """The engine's REST API on loopback, run by its own event loop in a background thread.

    Schemathesis calls synchronously (`requests`), so the server cannot share the test's loop;
    one server serves every operation of this module (a fresh database each module).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="live API server", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._error is not None:
            raise RuntimeError("the live API server did not start") from self._error
        return self.url

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        database = Database(self.database_url)
        if not database.is_sqlite:  # a clean schema, as the `database` fixture makes
            async with database.engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        async with run_model_fake() as fake:
            fake.set_default(_model_reply)
            model = openai.AsyncOpenAI(base_url=fake.url, api_key="model-key", max_retries=0)
            engine = Engine(db=database, model=model, clock=ManualClock())
            await engine.start()
            app = web.Application()
            app.add_subapp("/v1", api_app(engine, api_key=API_KEY, poll_after_ms=20))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()
                await engine.close()
                await model.close()
        await database.dispose()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('api-schema') / 'test.db'}"
    with _LiveServer(url) as base, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield _World(base, session)


# -- the test -----------------------------------------------------------------------------


def test_operations_cover_the_spec() -> None:
    """The fuzzed list is exactly the spec's Assistants operations (files/vector stores aside)."""
    assert sorted(_spec_operations(_full_spec())) == sorted(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_and_answers_per_spec(
    method: str, path: str, live_api: _World
) -> None:
    tally = _Tally()
    for mode in GenerationMode:
        operation = _schema(mode)[path][method]
        locations = {parameter.location.value for parameter in operation.iter_parameters()}
        ids_only = locations <= {"path", "header"} and not operation.body  # the header: auth
        count = (EXAMPLES_IDS_ONLY if ids_only else EXAMPLES)[mode]
        _examples(operation, mode, count * SCALE, live_api, tally)()
    # A fuzzer that never got past validation would prove little about the success path.
    assert any(200 <= s < 300 for s in tally.statuses), tally.statuses


def _examples(
    operation: Any, mode: GenerationMode, count: int, world: _World, tally: _Tally
) -> Callable[[], None]:
    @seed(SEED)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        world.refresh()
        scenario = data.draw(st.sampled_from(sorted(world.ids)), label="scenario")
        ids = world.ids[scenario]
        # Real ids mostly; now and then whatever the spec's `string` generates instead.
        chosen = {
            name: ids[name]
            for name in _path_names(operation.path)
            if data.draw(st.integers(0, 5), label=f"real {name}") > 0
        }
        case = data.draw(
            operation.as_strategy(generation_mode=mode, path_parameters=chosen or None)
        )
        _aim_at_world(case, ids, data)
        response = case.call(base_url=world.base, session=world.session)
        world.forget(case, response)
        tally.check(case, response)

    return example


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _aim_at_world(case: schemathesis.Case, ids: dict[str, str], data: st.DataObject) -> None:
    """Bodies that name other objects name real ones most of the time."""
    body = case.body
    if not isinstance(body, dict):
        return
    if "assistant_id" in body and data.draw(st.integers(0, 5), label="real assistant_id"):
        body["assistant_id"] = ids["assistant_id"]
    outputs = body.get("tool_outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        if data.draw(st.integers(0, 5), label="real call"):
            # The one output the waiting run asks for (its other fields as generated).
            body["tool_outputs"] = [{**outputs[0], "tool_call_id": ids.get("call_id", "none")}]
