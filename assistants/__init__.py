"""The embedded Assistants engine (Assistants API v2 semantics on any Chat Completions model).

The bot and the REST API use only what is listed here.
"""

from assistants.api import api_app
from assistants.artifacts import Citation, CodeCall, OutputFile, RunArtifacts
from assistants.clock import Clock, ManualClock, SystemClock
from assistants.engine import Engine
from assistants.errors import Conflict, EngineError, InvalidRequest, NotFound, Unavailable
from assistants.events import STREAM_END_EVENTS, StreamEvent
from assistants.leases import Lease
from assistants.model_client import ModelClient
from assistants.pagination import Page
from assistants.params import (
    AssistantCreate,
    AssistantUpdate,
    ListQuery,
    MessageCreate,
    MessageUpdate,
    RunCreate,
    SubmitToolOutputs,
    ThreadAndRunCreate,
    ThreadCreate,
    ThreadUpdate,
    parse,
)
from assistants.retrieval import default_embedder
from assistants.runner import RunnerConfig
from assistants.sandbox import SandboxConfig
from assistants.scheduler import Scheduler

__all__ = [
    "STREAM_END_EVENTS",
    "AssistantCreate",
    "AssistantUpdate",
    "Citation",
    "Clock",
    "CodeCall",
    "Conflict",
    "Engine",
    "EngineError",
    "InvalidRequest",
    "Lease",
    "ListQuery",
    "ManualClock",
    "MessageCreate",
    "MessageUpdate",
    "ModelClient",
    "NotFound",
    "OutputFile",
    "Page",
    "RunArtifacts",
    "RunCreate",
    "RunnerConfig",
    "SandboxConfig",
    "Scheduler",
    "StreamEvent",
    "SubmitToolOutputs",
    "SystemClock",
    "ThreadAndRunCreate",
    "ThreadCreate",
    "ThreadUpdate",
    "Unavailable",
    "api_app",
    "default_embedder",
    "parse",
]
