"""Object ids with the hosted prefixes and random suffixes."""

from __future__ import annotations

import secrets

__all__ = ["new_id"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

PREFIXES = {
    "assistant": "asst_",
    "thread": "thread_",
    "message": "msg_",
    "run": "run_",
    "step": "step_",
    "call": "call_",
    "file": "file-",
    "vector_store": "vs_",
}


def new_id(kind: str) -> str:
    """A fresh id such as `run_4Xk...` (24 random characters, as hosted ids look)."""
    return PREFIXES[kind] + "".join(secrets.choice(_ALPHABET) for _ in range(24))
