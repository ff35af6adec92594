"""Request bodies of the Assistants v2 operations, validated with the hosted limits.

The API parses JSON into these models and the bot builds them directly, so both paths get the
same checks. Unknown fields are refused, as hosted did ("Unrecognized request argument").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from assistants.errors import InvalidRequest

__all__ = [
    "AssistantCreate",
    "AssistantUpdate",
    "ListQuery",
    "MessageCreate",
    "MessageUpdate",
    "MetadataUpdate",
    "RunCreate",
    "SubmitToolOutputs",
    "ThreadAndRunCreate",
    "ThreadCreate",
    "ThreadUpdate",
    "parse",
]

Model = TypeVar("Model", bound=BaseModel)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return value
    if len(value) > 16:
        raise ValueError(
            "too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(value)} properties instead"
        )
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"key {key[:20]!r}... is longer than 64 characters")
        if len(item) > 512:
            raise ValueError(f"value of {key!r} is longer than 512 characters")
    return value


Metadata = dict[str, str]
FunctionName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionDefinition(_Params):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Params):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(_Params):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0, le=1)


class FileSearchOptions(_Params):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(_Params):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(_Params):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


class CodeInterpreterResources(_Params):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class FileSearchResources(_Params):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[dict[str, Any]] | None = Field(default=None, max_length=1)


class ToolResources(_Params):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class JsonSchemaFormat(_Params):
    name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Params):
    type: Literal["text"]


class ResponseFormatJsonObject(_Params):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(_Params):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
)


class _WithMetadata(_Params):
    metadata: Metadata | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_metadata(value)


class _AssistantFields(_WithMetadata):
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    description: Annotated[str, StringConstraints(max_length=512)] | None = None
    instructions: Annotated[str, StringConstraints(max_length=256_000)] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_resources: ToolResources | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None


class AssistantCreate(_AssistantFields):
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class AssistantUpdate(_AssistantFields):
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class ImageFile(_Params):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrl(_Params):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Params):
    type: Literal["text"]
    text: str


class ImageFilePart(_Params):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrlPart(_Params):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class FileSearchTypeOnly(_Params):
    type: Literal["file_search"]


AttachmentTool = Annotated[CodeInterpreterTool | FileSearchTypeOnly, Field(discriminator="type")]


class Attachment(_Params):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(_WithMetadata):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None


class MessageUpdate(_WithMetadata):
    pass


MetadataUpdate = MessageUpdate


class ThreadCreate(_WithMetadata):
    messages: list[MessageCreate] | None = None
    tool_resources: ToolResources | None = None


class ThreadUpdate(_WithMetadata):
    tool_resources: ToolResources | None = None


class TruncationStrategy(_Params):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(default=None, ge=1)


class NamedFunction(_Params):
    name: str


class NamedToolChoice(_Params):
    type: Literal["function", "file_search", "code_interpreter"]
    function: NamedFunction | None = None


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class _RunFields(_WithMetadata):
    assistant_id: str
    model: str | None = None
    instructions: Annotated[str, StringConstraints(max_length=256_000)] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=20)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    max_completion_tokens: int | None = Field(default=None, ge=256)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None


class RunCreate(_RunFields):
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = None


class ThreadAndRunCreate(_RunFields):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class ToolOutput(_Params):
    tool_call_id: str
    output: str = ""


class SubmitToolOutputs(_Params):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


class ListQuery(_Params):
    limit: int = Field(default=20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


def parse(model: type[Model], data: Any) -> Model:
    """Validates `data` into `model`, turning the first problem into an `InvalidRequest`."""
    if not isinstance(data, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ValidationError) -> InvalidRequest:
    # Of a union's failed branches, the deepest error is the one that names the real mistake.
    error = max(exc.errors(), key=lambda e: len(e["loc"]))
    param = _param_path(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    reason = error["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"Invalid '{param}': {reason}.", param=param, code="invalid_value")


def _param_path(loc: tuple[int | str, ...]) -> str:
    """`('tools', 0, 'function', 'function', 'name')` -> `tools[0].function.name`.

    Pydantic puts the chosen union branch (a discriminator tag or a type name) into `loc`
    right after the union's position; that step is not part of the request's path.
    """
    path = ""
    after_union_slot = False
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            after_union_slot = True
            continue
        if part.startswith(("literal[", "list[", "str", "function-", "tagged-union[")):
            continue
        if after_union_slot and part in _UNION_TAGS:
            after_union_slot = False
            continue
        path += f".{part}" if path else part
        after_union_slot = part in _UNION_FIELDS
    return path


_UNION_FIELDS = {"tools", "content", "response_format", "tool_choice"}
_UNION_TAGS = {
    "function",
    "file_search",
    "code_interpreter",
    "text",
    "image_file",
    "image_url",
    "json_object",
    "json_schema",
    "NamedToolChoice",
}
