"""The code_interpreter's sandbox: one ipykernel per engine thread inside bubblewrap.

Each kernel runs as an unprivileged uid in its own user, pid, network (no interfaces but its
own loopback), ipc and uts namespaces, sees a read-only /usr and sandbox venv, its thread's
folder at /mnt/data and sized temp folders, with a scrubbed environment and rlimits. Where
that cannot run, `SandboxUnavailable` says why; code never runs unsandboxed.
"""

from assistants.sandbox._config import Execution, SandboxConfig
from assistants.sandbox._errors import SandboxUnavailable
from assistants.sandbox._pool import SandboxPool

__all__ = ["Execution", "SandboxConfig", "SandboxPool", "SandboxUnavailable"]
