"""Turns a kernel's iopub messages for one request into the parts of an `Execution`.

Output is capped (a cell printing in a loop for 30 s must not fill the host's memory): each
stream and the result keep their first `MAX_STREAM_CHARS` characters, at most `MAX_IMAGES`
images and `MAX_IMAGE_BYTES` of them are kept. Messages come from code we do not trust, so
anything malformed is dropped rather than raised.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

__all__ = ["Output", "strip_ansi"]

MAX_STREAM_CHARS = 1_000_000
MAX_IMAGES = 32
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # all images of one execution together
MAX_TRACEBACK_CHARS = 4_000
MAX_EVALUE_CHARS = 2_000
_BLANK_LINES = re.compile(r"\n\s*\n")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class Output:
    """Accumulates stream text, the result, the error and images of one execution."""

    def __init__(self) -> None:
        self._streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._sizes = {"stdout": 0, "stderr": 0}
        self._truncated: set[str] = set()
        self.result: str | None = None
        self.error: str | None = None
        self.images: list[bytes] = []
        self.idle = False

    def add(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg.get("content", {})
        if kind == "stream":
            self.write(content.get("name", "stdout"), content.get("text", ""))
        elif kind in {"execute_result", "display_data", "update_display_data"}:
            data = content.get("data", {})
            if kind == "execute_result" and "text/plain" in data:
                self.result = strip_ansi(str(data["text/plain"])[:MAX_STREAM_CHARS])
            self._image(data.get("image/png"))
        elif kind == "error":
            self.error = format_error(content)
        elif kind == "status" and content.get("execution_state") == "idle":
            self.idle = True

    def write(self, name: str, text: str) -> None:
        name = "stderr" if name == "stderr" else "stdout"
        room = MAX_STREAM_CHARS - self._sizes[name]
        if room <= 0:
            self._truncated.add(name)
            return
        if len(text) > room:
            text = text[:room]
            self._truncated.add(name)
        self._streams[name].append(text)
        self._sizes[name] += len(text)

    def _image(self, png: object) -> None:
        if not isinstance(png, str):
            return
        used = sum(len(image) for image in self.images)
        if len(self.images) >= MAX_IMAGES or used + len(png) * 3 // 4 > MAX_IMAGE_BYTES:
            self.write("stderr", "[an image was dropped: too many or too large images]\n")
            return
        try:
            self.images.append(base64.b64decode(png, validate=False))
        except (binascii.Error, ValueError):
            self.write("stderr", "[an image could not be decoded]\n")

    def text(self, name: str) -> str:
        out = "".join(self._streams[name])
        if name in self._truncated:
            out += f"\n[{name} truncated after {MAX_STREAM_CHARS} characters]\n"
        return out


def format_error(content: dict[str, Any]) -> str:
    """'ename: evalue' and the plain traceback (tail kept when long)."""
    head = f"{content.get('ename', 'Error')}: {str(content.get('evalue', ''))[:MAX_EVALUE_CHARS]}"
    frames = strip_ansi("\n".join(str(line) for line in content.get("traceback", [])))
    frames = _BLANK_LINES.sub("\n", frames).strip()
    if len(frames) > MAX_TRACEBACK_CHARS:
        frames = "…\n" + frames[-MAX_TRACEBACK_CHARS:]
    if not frames or frames == head:
        return head
    return f"{head}\n{frames}"
