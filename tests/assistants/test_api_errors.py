"""Bad input never yields a 5xx: the REST API answers it the way hosted Assistants v2 did.

Through the official SDK where it can send the request (it raises `NotFoundError`,
`BadRequestError`, `AuthenticationError` carrying `.status_code` and `.body`), and through raw
aiohttp for what the SDK never sends (broken JSON, wrong types, unknown fields, unknown routes).
Every error body is exactly `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import API_KEY
from tests.fakes.model_server import ModelFake, ToolCall, tool_calls_reply

ERROR_KEYS = {"message", "type", "param", "code"}
NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)
LOOKUP_TOOL: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def error_of(body: object) -> dict[str, Any]:
    """The `error` object, after checking the envelope has exactly OpenAI's shape."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def sdk_error(exc: openai.APIStatusError) -> dict[str, Any]:
    # The SDK hands `.body` the `error` object itself; the raw envelope is on the response.
    error = error_of(exc.response.json())
    assert exc.body == error
    return error


class Raw:
    """Plain HTTP against the API, for requests the SDK cannot or will not make."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session

    async def send(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base + path, data=data, headers=sent
        ) as response:
            assert response.content_type == "application/json", response.content_type
            return response.status, await response.json()

    async def error(
        self, status: int, method: str, path: str, body: object = None, **kw: Any
    ) -> dict[str, Any]:
        got, payload = await self.send(method, path, body, **kw)
        assert got == status, (got, payload)
        return error_of(payload)


@pytest.fixture
async def raw(api_url: str) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(api_url, session)


async def _waiting_run(client: openai.AsyncOpenAI, model: ModelFake) -> tuple[str, str, str]:
    """(assistant, thread, run) with the run parked in `requires_action`: the thread is locked."""
    assistant = await client.beta.assistants.create(model="fake-model", tools=[LOOKUP_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "look"}])
    model.script(tool_calls_reply(ToolCall("lookup", "{}")))
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )
    assert run.status == "requires_action"
    return assistant.id, thread.id, run.id


# -- unknown ids: 404 ---------------------------------------------------------------------


async def test_unknown_ids_are_404_naming_the_object(client: openai.AsyncOpenAI) -> None:
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    runs, messages = client.beta.threads.runs, client.beta.threads.messages
    cases: list[tuple[Any, str]] = [
        (client.beta.assistants.retrieve("asst_nope"), "No assistant found with id 'asst_nope'."),
        (client.beta.assistants.update("asst_nope", name="x"), "No assistant found"),
        (client.beta.assistants.delete("asst_nope"), "No assistant found"),
        (client.beta.threads.retrieve("thread_nope"), "No thread found with id 'thread_nope'."),
        (client.beta.threads.update("thread_nope", metadata={}), "No thread found"),
        (client.beta.threads.delete("thread_nope"), "No thread found"),
        (messages.list("thread_nope"), "No thread found with id 'thread_nope'."),
        (messages.create("thread_nope", role="user", content="x"), "No thread found"),
        (messages.retrieve("msg_nope", thread_id=thread.id), "No message found with id 'msg_"),
        (messages.update("msg_nope", thread_id=thread.id, metadata={}), "No message found"),
        (messages.delete("msg_nope", thread_id=thread.id), "No message found"),
        (runs.list("thread_nope"), "No thread found"),
        (runs.retrieve("run_nope", thread_id=thread.id), "No run found with id 'run_nope'."),
        (runs.update("run_nope", thread_id=thread.id, metadata={}), "No run found"),
        (runs.cancel("run_nope", thread_id=thread.id), "No run found"),
        (runs.steps.list("run_nope", thread_id=thread.id), "No run found"),
        (runs.retrieve("run_nope", thread_id="thread_nope"), "No thread found"),
    ]
    for call, message in cases:
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert caught.value.status_code == 404
        error = sdk_error(caught.value)
        assert error["message"].startswith(message), error
        assert error["type"] == "invalid_request_error"


async def test_unknown_step_is_404(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    _, thread, run = await _waiting_run(client, model)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.beta.threads.runs.steps.retrieve("step_nope", thread_id=thread, run_id=run)
    assert sdk_error(caught.value)["message"] == "No run step found with id 'step_nope'."


async def test_run_with_unknown_assistant_is_404_on_assistant_id(
    client: openai.AsyncOpenAI,
) -> None:
    thread = await client.beta.threads.create()
    for call in (
        client.beta.threads.runs.create(thread.id, assistant_id="asst_nope"),
        client.beta.threads.create_and_run(assistant_id="asst_nope"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        error = sdk_error(caught.value)
        assert error == {
            "message": "No assistant found with id 'asst_nope'.",
            "type": "invalid_request_error",
            "param": "assistant_id",
            "code": None,
        }


async def test_unstorable_ids_are_404_not_500(raw: Raw) -> None:
    """A NUL in an id: PostgreSQL would refuse the query (a 500 before the fix)."""
    error = await raw.error(404, "GET", "/assistants/asst_%00x")
    assert error["message"] == "No assistant found with id 'asst_\x00x'."
    await raw.error(404, "GET", "/threads/thread_%00/messages")
    assert (await raw.error(404, "POST", "/threads/%00/runs", {"assistant_id": "a"}))[
        "message"
    ].startswith("No thread found")
    status, page = await raw.send("GET", "/assistants?after=asst_%00")
    assert status == 400 and error_of(page)["param"] == "after"
    thread_id = (await raw.send("POST", "/threads", {}))[1]["id"]
    status, page = await raw.send("GET", f"/threads/{thread_id}/messages?run_id=run_%00")
    assert (status, page["data"]) == (200, [])


# -- the thread lock: 400 with the hosted wording -------------------------------------------


async def test_active_run_locks_the_thread_with_hosted_wording(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant, thread, run = await _waiting_run(client, model)

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.messages.create(thread, role="user", content="more")
    assert caught.value.status_code == 400
    assert sdk_error(caught.value) == {
        "message": f"Can't add messages to {thread} while a run {run} is active.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.create(thread, assistant_id=assistant)
    assert sdk_error(caught.value) == {
        "message": f"Thread {thread} already has an active run {run}.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_run_state_errors_use_hosted_wording(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    _, thread, run = await _waiting_run(client, model)
    await client.beta.threads.runs.cancel(run, thread_id=thread)

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.cancel(run, thread_id=thread)
    assert sdk_error(caught.value)["message"] == "Cannot cancel run with status 'cancelled'."

    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.submit_tool_outputs(
            run, thread_id=thread, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )
    message = sdk_error(caught.value)["message"]
    assert message == 'Runs in status "cancelled" do not accept tool outputs.'


# -- authentication: 401 ------------------------------------------------------------------


async def test_wrong_key_is_401_and_never_echoed(api_url: str) -> None:
    secret = "sk-live-abcdef0123456789"
    async with openai.AsyncOpenAI(base_url=api_url, api_key=secret, max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.beta.assistants.list()
    assert caught.value.status_code == 401
    error = sdk_error(caught.value)
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert secret not in caught.value.response.text
    assert secret[-6:] not in caught.value.response.text  # not even a hint of it


async def test_missing_key_is_401(raw: Raw) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "x"}):
        error = await raw.error(401, "GET", "/assistants", headers=headers)
        assert error["message"].startswith("You didn't provide an API key.")
    # Authentication comes before routing: an unknown route does not reveal itself.
    await raw.error(401, "GET", "/nope", headers={"Authorization": ""})


# -- invalid bodies: 400 with error.param -------------------------------------------------


async def test_bodies_that_are_not_json_objects(raw: Raw) -> None:
    for data in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"model": NaN}'):
        error = await raw.error(400, "POST", "/assistants", data=data)
        assert error == {
            "message": NOT_JSON,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }


async def test_missing_required_parameter(raw: Raw) -> None:
    error = await raw.error(400, "POST", "/assistants", {})
    assert error == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": None,
    }
    thread_id = (await raw.send("POST", "/threads", {}))[1]["id"]
    error = await raw.error(400, "POST", f"/threads/{thread_id}/messages", {"role": "user"})
    assert (error["param"], error["message"]) == (
        "content",
        "Missing required parameter: 'content'.",
    )
    error = await raw.error(400, "POST", f"/threads/{thread_id}/runs", {})
    assert error["param"] == "assistant_id"


async def test_unknown_fields_are_refused(raw: Raw) -> None:
    error = await raw.error(400, "POST", "/assistants", {"model": "m", "colour": "red"})
    assert error == {
        "message": "Unrecognized request argument supplied: colour",
        "type": "invalid_request_error",
        "param": "colour",
        "code": None,
    }
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "f", "x": 1}}]}
    error = await raw.error(400, "POST", "/assistants", body)
    assert error["message"] == "Unrecognized request argument supplied: tools[0].function.x"
    assert error["param"] == "tools[0].function.x"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": 5}, "model"),
        ({"model": "m", "name": ["x"]}, "name"),
        ({"model": "m", "metadata": {"k": 1}}, "metadata.k"),
        ({"model": "m", "metadata": "k=v"}, "metadata"),
        ({"model": "m", "tools": {"type": "code_interpreter"}}, "tools"),
        ({"model": "m", "tools": [{"type": "browser"}]}, "tools[0]"),
        ({"model": "m", "temperature": "hot"}, "temperature"),
        ({"model": "m", "response_format": {"type": "xml"}}, "response_format"),
    ],
)
async def test_wrong_types_name_the_parameter(raw: Raw, body: object, param: str) -> None:
    error = await raw.error(400, "POST", "/assistants", body)
    assert error["param"] == param, error
    assert error["message"].startswith(f"Invalid '{param}'"), error
    assert error["type"] == "invalid_request_error"


async def test_text_no_database_can_hold_is_400_not_500(raw: Raw) -> None:
    """NUL (PostgreSQL refuses it) and unpaired surrogates (not UTF-8): 500s before the fix."""
    for data, param in (
        (b'{"model": "m", "name": "a\\u0000b"}', "name"),
        (b'{"model": "m", "metadata": {"k\\u0000": "v"}}', "metadata.k\x00"),
        (b'{"model": "m", "description": "\\ud800"}', "description"),
    ):
        error = await raw.error(400, "POST", "/assistants", data=data)
        assert error["param"] == param, error
        assert error["code"] == "invalid_value"


async def test_absurd_nesting_and_numbers_are_400_not_500(raw: Raw) -> None:
    deep: Any = {}
    for _ in range(150):
        deep = {"d": deep}
    function = {"name": "f", "parameters": {"type": "object", "properties": deep}}
    body = {"model": "m", "tools": [{"type": "function", "function": function}]}
    error = await raw.error(400, "POST", "/assistants", body)
    assert error["param"].startswith("tools[0].function.parameters.properties.d")
    error = await raw.error(400, "POST", "/assistants", data=b"[" * 100_000)
    assert error["message"] == NOT_JSON
    thread_id = (await raw.send("POST", "/threads", {}))[1]["id"]
    assistant_id = (await raw.send("POST", "/assistants", {"model": "m"}))[1]["id"]
    for field in ("max_prompt_tokens", "max_completion_tokens"):
        run_body: dict[str, Any] = {"assistant_id": assistant_id, field: 10**30}
        error = await raw.error(400, "POST", f"/threads/{thread_id}/runs", run_body)
        assert error["param"] == field


# -- hosted limits ------------------------------------------------------------------------


async def _bad_request(call: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        await call
    assert caught.value.status_code == 400
    error = sdk_error(caught.value)
    assert error["type"] == "invalid_request_error"
    return error


async def test_assistant_limits(client: openai.AsyncOpenAI) -> None:
    create = client.beta.assistants.create
    error = await _bad_request(create(model="m", metadata={str(i): "v" for i in range(17)}))
    assert error["param"] == "metadata"
    assert "at most 16 properties, but got an object with 17" in error["message"]
    error = await _bad_request(create(model="m", metadata={"k" * 65: "v"}))
    assert error["param"] == "metadata"
    error = await _bad_request(create(model="m", metadata={"k": "v" * 513}))
    assert error["param"] == "metadata"
    error = await _bad_request(create(model="m", name="n" * 257))
    assert error == {
        "message": "Invalid 'name': string too long. Expected a string with maximum length "
        "256, but got a string with length 257 instead.",
        "type": "invalid_request_error",
        "param": "name",
        "code": "invalid_value",
    }
    error = await _bad_request(create(model="m", description="d" * 513))
    assert error["param"] == "description"
    error = await _bad_request(create(model="m", tools=[{"type": "code_interpreter"}] * 129))
    assert error["message"] == (
        "Invalid 'tools': array too long. Expected an array with maximum length 128, "
        "but got an array with length 129 instead."
    )
    error = await _bad_request(create(model="m", temperature=3))
    assert error["message"] == (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
        "but got 3 instead."
    )
    assert error["param"] == "temperature"
    error = await _bad_request(create(model="m", top_p=1.5))
    assert error["param"] == "top_p"
    # Exactly at the limits is fine.
    assistant = await create(
        model="m",
        name="n" * 256,
        description="d" * 512,
        metadata={f"{i:064d}": "v" * 512 for i in range(16)},
        tools=[{"type": "code_interpreter"}] * 128,
        temperature=2,
    )
    assert len(assistant.tools) == 128


async def test_run_limits(client: openai.AsyncOpenAI) -> None:
    assistant = await client.beta.assistants.create(model="m")
    thread = await client.beta.threads.create()
    create = client.beta.threads.runs.create
    error = await _bad_request(
        create(thread.id, assistant_id=assistant.id, tools=[{"type": "code_interpreter"}] * 21)
    )
    assert error["param"] == "tools"
    assert "maximum length 20, but got an array with length 21" in error["message"]
    error = await _bad_request(create(thread.id, assistant_id=assistant.id, temperature=3))
    assert error["param"] == "temperature"
    error = await _bad_request(
        create(thread.id, assistant_id=assistant.id, max_completion_tokens=100)
    )
    assert error == {
        "message": "Invalid 'max_completion_tokens': integer below minimum value. "
        "Expected a value >= 256, but got 100 instead.",
        "type": "invalid_request_error",
        "param": "max_completion_tokens",
        "code": "invalid_value",
    }
    error = await _bad_request(create(thread.id, assistant_id=assistant.id, max_prompt_tokens=255))
    assert error["param"] == "max_prompt_tokens"
    error = await _bad_request(
        create(
            thread.id,
            assistant_id=assistant.id,
            truncation_strategy={"type": "last_messages", "last_messages": 0},
        )
    )
    assert error["param"] == "truncation_strategy.last_messages"


async def test_list_parameters(client: openai.AsyncOpenAI, raw: Raw) -> None:
    lists = client.beta.assistants.list
    error = await _bad_request(lists(limit=0))
    assert error["message"] == (
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead."
    )
    assert error["param"] == "limit"
    error = await _bad_request(lists(limit=101))
    assert error["param"] == "limit"
    error = await _bad_request(lists(order="sideways"))  # type: ignore[arg-type]
    assert error["param"] == "order"
    error = await _bad_request(lists(after="asst_nope"))
    assert error["param"] == "after"
    error = await _bad_request(lists(before="asst_nope"))
    assert error["param"] == "before"
    thread = await client.beta.threads.create()
    error = await _bad_request(client.beta.threads.messages.list(thread.id, after="msg_nope"))
    assert error["param"] == "after"
    error = await raw.error(400, "GET", "/assistants?limit=ten")
    assert error["param"] == "limit"
    assert (await lists(limit=100)).data == []


# -- routes -------------------------------------------------------------------------------


async def test_unknown_routes_are_404_json(raw: Raw) -> None:
    for path in ("/nope", "/assistants/a/b/c", "/threads/t/messages/m/extra", "/assistants/"):
        error = await raw.error(404, "GET", path)
        assert error["message"] == f"Invalid URL (GET /v1{path})"
        assert error["type"] == "invalid_request_error"


async def test_wrong_methods_are_405_json(raw: Raw, api_url: str) -> None:
    for method, path in (("PUT", "/assistants"), ("PATCH", "/threads/t"), ("DELETE", "/threads")):
        error = await raw.error(405, method, path)
        assert error["message"] == f"Invalid method for URL ({method} /v1{path})"
    async with raw.session.put(
        api_url + "/assistants", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        assert {"GET", "POST"} <= set(response.headers["Allow"].split(","))
