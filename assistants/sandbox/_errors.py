"""The one error the sandbox raises: it cannot run here at all."""

from __future__ import annotations

__all__ = ["SandboxUnavailable"]


class SandboxUnavailable(Exception):
    """The sandbox cannot run on this machine; the message says why and how to fix it.

    Raised by `SandboxPool.check()` and by `execute()` when no kernel can be started. Never
    raised for anything the executed code does: errors, timeouts and crashes come back as an
    `Execution`. The tool layer reports the code_interpreter as unavailable with this text
    instead of ever running code unsandboxed.
    """
