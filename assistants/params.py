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
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
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
    "storable",
]

Model = TypeVar("Model", bound=BaseModel)

#: Token limits are stored in 32-bit integer columns (PostgreSQL `integer`).
_MAX_TOKENS = 2**31 - 1


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Object(_Params):
    """A nested request object. A field sent as null is kept as absent, so it is never echoed
    back as null where the wire types forbid it (`function.description` is a string,
    `file_search.max_num_results` an integer, `tool_resources.code_interpreter` an object)."""

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


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


class FunctionDefinition(_Object):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Object):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(_Object):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0, le=1)


class FileSearchOptions(_Object):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(_Object):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(_Object):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


class CodeInterpreterResources(_Object):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class FileSearchResources(_Object):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[dict[str, Any]] | None = Field(default=None, max_length=1)


class ToolResources(_Object):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class JsonSchemaFormat(_Object):
    name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Object):
    type: Literal["text"]


class ResponseFormatJsonObject(_Object):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(_Object):
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


class ImageFile(_Object):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrl(_Object):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Object):
    type: Literal["text"]
    text: str


class ImageFilePart(_Object):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrlPart(_Object):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class FileSearchTypeOnly(_Object):
    type: Literal["file_search"]


AttachmentTool = Annotated[CodeInterpreterTool | FileSearchTypeOnly, Field(discriminator="type")]


class Attachment(_Object):
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
    last_messages: int | None = Field(default=None, ge=1, le=_MAX_TOKENS)


class NamedFunction(_Object):
    name: str


class NamedToolChoice(_Object):
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
    max_prompt_tokens: int | None = Field(default=None, ge=256, le=_MAX_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=256, le=_MAX_TOKENS)
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
    _check_text(data, ())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def storable(text: str) -> bool:
    """False for text no database can hold: NUL (PostgreSQL refuses it in text) or an unpaired
    surrogate (not encodable as UTF-8; JSON's `"\\ud800"` decodes to one)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value: Any, loc: tuple[int | str, ...]) -> None:
    """Refuses unstorable text anywhere in a request body, keys included, and nesting deeper
    than any real request (which would exhaust the stack further on). Both were 500s."""
    if len(loc) > _MAX_DEPTH:
        param = _raw_path(loc[:_MAX_DEPTH])
        raise InvalidRequest(
            f"Invalid '{param}': nested more than {_MAX_DEPTH} levels deep.",
            param=param,
            code="invalid_value",
        )
    if isinstance(value, str):
        if not storable(value):
            param = _raw_path(loc)
            raise InvalidRequest(
                f"Invalid '{param}': text may not contain NUL characters or unpaired surrogates.",
                param=param,
                code="invalid_value",
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, (*loc, key))
            _check_text(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, (*loc, index))


_MAX_DEPTH = 100


def _raw_path(loc: tuple[int | str, ...]) -> str:
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" if i else part
        for i, part in enumerate(loc)
    )


def _invalid(exc: ValidationError) -> InvalidRequest:
    # Of a union's failed branches, the deepest error is the one that names the real mistake;
    # at equal depth an unknown field goes first: a misspelt name explains the missing one.
    error = max(exc.errors(), key=lambda e: (len(e["loc"]), e["type"] == "extra_forbidden"))
    param = _param_path(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    reason = _hosted_reason(kind, error.get("ctx") or {}, error["input"])
    if reason is None:
        reason = error["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"Invalid '{param}': {reason}.", param=param, code="invalid_value")


def _hosted_reason(kind: str, ctx: dict[str, Any], given: Any) -> str | None:
    """Hosted OpenAI's wording for a broken length or bound, e.g. "array too long. Expected an
    array with maximum length 128, but got an array with length 129 instead"."""
    if kind == "string_too_long" and isinstance(given, str):
        return (
            f"string too long. Expected a string with maximum length {ctx['max_length']}, "
            f"but got a string with length {len(given)} instead"
        )
    if kind == "too_long" and "actual_length" in ctx:
        return (
            f"array too long. Expected an array with maximum length {ctx['max_length']}, "
            f"but got an array with length {ctx['actual_length']} instead"
        )
    bounds = {
        "greater_than_equal": ("below minimum", ">=", "ge"),
        "greater_than": ("below minimum", ">", "gt"),
        "less_than_equal": ("above maximum", "<=", "le"),
        "less_than": ("above maximum", "<", "lt"),
    }
    if kind in bounds:
        where, sign, key = bounds[kind]
        number = _number(given)
        if number is None:
            return None
        bound = ctx[key]
        # Pydantic states a float field's bound as a float (2.0): the noun follows the field.
        noun = "decimal" if isinstance(bound, float) else "integer"
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"{noun} {where} value. Expected a value {sign} {bound}, but got {number} instead"
    return None


def _number(given: Any) -> int | float | None:
    if isinstance(given, bool):
        return None
    if isinstance(given, int | float):
        return given
    if isinstance(given, str):  # query parameters arrive as text
        for kind in (int, float):
            try:
                return kind(given)
            except ValueError:
                continue
    return None


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
