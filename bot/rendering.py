"""Answer text → what Slack shows: mrkdwn, `markdown` blocks, size-safe pieces, citations.

Slack renders Markdown itself in `markdown_text` (chat.startStream/appendStream/stopStream) and in
the `markdown` block, so answers go there as Markdown. Slack still demands mrkdwn in the `text`
fallback and in section/context blocks: `to_mrkdwn` covers those. Everything here is pure (no
Slack client, no I/O) so it can be tested on strings alone.

Limits (shared/FACTS.md §2): `markdown_text` ≤ 12,000 chars per call, a `markdown` block ≤ 12,000
(and all markdown blocks of one message together ≤ 12,000), section text ≤ 3,000, ≤ 50 blocks,
`text` hits msg_too_long near 4k on chat.update.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "CONTEXT_ELEMENT_LIMIT",
    "CONTEXT_MAX_ELEMENTS",
    "MARKDOWN_BLOCK_LIMIT",
    "MarkdownPiece",
    "Source",
    "fallback_text",
    "markdown_blocks",
    "render_citations",
    "sources_block",
    "sources_markdown",
    "split_markdown",
    "split_markdown_pieces",
    "to_mrkdwn",
]

MARKDOWN_BLOCK_LIMIT = 12_000
"""Slack's cap on one `markdown` block and on `markdown_text` per streaming call."""
CONTEXT_MAX_ELEMENTS = 10
CONTEXT_ELEMENT_LIMIT = 3_000
DEFAULT_SPLIT_LIMIT = 11_000
"""Below 12,000 so a piece plus a little decoration still fits one call or block."""

_ZWSP = "\u200b"
_ELLIPSIS = "…"
_QUOTE_CHARS = 150
_LONG_LINE = 20_000  # inline parsing is skipped beyond this

# ----------------------------------------------------------------------------------- helpers


def _esc(text: str) -> str:
    """Slack's three control characters as entities; Slack decodes them everywhere."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(text: str) -> str:
    """Unix newlines, no C0 control characters (Slack shows none; we use some as sentinels)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _is_high_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


def _is_low_surrogate(ch: str) -> bool:
    return "\udc00" <= ch <= "\udfff"


def _bad_cut(text: str, i: int) -> bool:
    """True if cutting `text` before index `i` would tear a character apart."""
    if i <= 0 or i >= len(text):
        return False
    before, after = text[i - 1], text[i]
    if _is_high_surrogate(before) and _is_low_surrogate(after):
        return True
    if before == "\r" and after == "\n":
        return True
    if before == "\u200d" or after in "\u200d\ufe0e\ufe0f":
        return True
    return unicodedata.combining(after) != 0 or "\U0001f3fb" <= after <= "\U0001f3ff"


def _safe_cut(text: str, i: int, floor: int) -> int:
    """Moves a cut left (not below floor+1) until it no longer tears a character."""
    j = i
    while j > floor + 1 and _bad_cut(text, j) and i - j < 32:
        j -= 1
    if _bad_cut(text, j):
        # A long run of combining marks: at least never split a surrogate pair.
        j = i
        while j > floor + 1 and _is_low_surrogate(text[j]) and _is_high_surrogate(text[j - 1]):
            j -= 1
    return j


def _display_width(text: str) -> int:
    """Monospace columns a string takes (CJK and most emoji are two columns wide)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufe0e\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


# ------------------------------------------------------------------------ fences and tables

_FENCE_OPEN = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")


class _Fence(NamedTuple):
    indent: str
    char: str
    length: int
    line: str  # the opener line, without its line break

    def closer(self) -> str:
        return self.indent + self.char * self.length


def _fence_open(line: str) -> _Fence | None:
    """An opening code fence. Any indentation is accepted: models nest fences in list items."""
    m = _FENCE_OPEN.match(line.rstrip("\r\n"))
    if m is None:
        return None
    indent, fence, info = m.groups()
    if fence[0] == "`" and "`" in info:
        return None
    return _Fence(indent, fence[0], len(fence), line.rstrip("\r\n"))


def _fence_closes(line: str, fence: _Fence) -> bool:
    body = line.strip(" \t\r\n")
    return len(body) >= fence.length and body == fence.char * len(body)


def _fence_end_state(text: str, start: _Fence | None = None) -> _Fence | None:
    """The fence still open at the end of `text` (None if every code block is closed)."""
    fence = start
    for line in text.split("\n"):
        if fence is None:
            fence = _fence_open(line)
        elif _fence_closes(line, fence):
            fence = None
    return fence


_DELIMITER_ROW = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


def _is_table_start(line: str, next_line: str) -> bool:
    """A GFM table: a header row with pipes, then a delimiter row (`| --- | :-: |`)."""
    return (
        "|" in line
        and "|" in next_line
        and bool(line.strip())
        and _DELIMITER_ROW.match(next_line.rstrip("\r\n")) is not None
        and _fence_open(line) is None
    )


def _table_end(lines: Sequence[str], start: int) -> int:
    """Index after the last row of the table whose header is lines[start]."""
    end = start + 2
    while (
        end < len(lines)
        and lines[end].strip()
        and "|" in lines[end]
        and _fence_open(lines[end]) is None
    ):
        end += 1
    return end


def _split_row(line: str) -> list[str]:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    cells: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row) and row[i + 1] == "|":
            current.append("\\|")
            i += 2
            continue
        if row[i] == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(row[i])
        i += 1
    cells.append("".join(current).strip())
    return cells


# --------------------------------------------------------------------------------- to_mrkdwn

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL_AUTOLINK = re.compile(r"<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9][A-Za-z0-9.\-]*)>")
# Slack's own references the model may write on purpose: users, channels, user groups, dates.
# <!here>, <!channel> and <!everyone> are deliberately not among them (no mass pings).
_SLACK_TOKEN = re.compile(
    r"<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+|!subteam\^[A-Z0-9]+|!date\^[^<>|\n]+)(?:\|[^<>\n]*)?>"
)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>\x02\x03]+", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\x02(\d+)\x03")

_BOLD, _ITALIC, _STRIKE = "\x04", "\x05", "\x06"
_SENTINELS = {_BOLD: "*", _ITALIC: "_", _STRIKE: "~"}

# (pattern, markers): markers wrap the inner text; the order matters (longest runs first).
_EMPHASIS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<!\*)\*\*\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*\*\*(?!\*)"), "bi"),
    (re.compile(r"(?<![\w_])___(?=[^\s_])(.{1,1000}?)(?<=[^\s_])___(?![\w_])"), "bi"),
    (re.compile(r"(?<!\*)\*\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*\*(?!\*)"), "b"),
    (re.compile(r"(?<![\w_])__(?=[^\s_])(.{1,1000}?)(?<=[^\s_])__(?![\w_])"), "b"),
    (re.compile(r"(?<!~)~~(?=[^\s~])(.{1,1000}?)(?<=[^\s~])~~(?!~)"), "s"),
    (re.compile(r"(?<!\*)\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*(?!\*)"), "i"),
    (re.compile(r"(?<![\w_])_(?=[^\s_])(.{1,1000}?)(?<=[^\s_])_(?![\w_])"), "i"),
]

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+](?:[ \t]+(.*))?$")
_ORDERED = re.compile(r"^([ \t]*)(\d{1,9})([.)])(?:[ \t]+(.*))?$")
_TASK = re.compile(r"^\[([ xX])\][ \t]+")
_QUOTE = re.compile(r"^ {0,3}> ?(.*)$")
_REF_DEF = re.compile(
    r"^ {0,3}\[([^\]^][^\]]*)\]:[ \t]*<?([^\s<>]+)>?"
    r"(?:[ \t]+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?[ \t]*$"
)

_RULE = "──────────"


def _run_length(text: str, i: int, char: str) -> int:
    j = i
    while j < len(text) and text[j] == char:
        j += 1
    return j - i


def _code_close(text: str, start: int, run: int) -> int:
    """Start of the backtick run of exactly `run` that closes a code span, or -1."""
    j = text.find("`" * run, start)
    while j >= 0:
        end = j + _run_length(text, j, "`")
        if end - j == run:
            return j
        j = text.find("`" * run, end)
    return -1


def _bracket_pairs(text: str) -> dict[int, int]:
    """Index of each `[` → its matching `]`, in one pass (escapes and code spans skipped)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "`":
            run = _run_length(text, i, "`")
            close = _code_close(text, i + run, run)
            i = close + run if close >= 0 else i + run
            continue
        if c == "[":
            stack.append(i)
        elif c == "]" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


_DEST_CHAR = r"(?:[^\s()\\]|\\.)"
# (<url> "title") or (url "title"), one level of balanced parentheses inside a bare url.
_DESTINATION = re.compile(
    rf"\([ \t]*(?:<([^<>\n]*)>|({_DEST_CHAR}*(?:\({_DEST_CHAR}*\){_DEST_CHAR}*)*))"
    r"(?:[ \t]+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?[ \t]*\)"
)


def _norm_label(label: str) -> str:
    return " ".join(label.split()).casefold()


def _link_url(url: str) -> str:
    """A URL fit for `<url|text>`: `&` as an entity, `<`, `>`, `|` and spaces percent-encoded."""
    url = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    return url.replace("&", "&amp;")


def _unescape_markdown(text: str) -> str:
    """Backslash escapes and entities resolved, as CommonMark does in URLs and titles."""
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text)


class _Inline:
    """Inline Markdown → mrkdwn (or plain text), with link reference definitions at hand."""

    def __init__(self, defs: Mapping[str, str]) -> None:
        self.defs = defs

    def convert(
        self, text: str, *, plain: bool = False, bold: bool = True, links: bool = True
    ) -> str:
        """`plain`: no markup at all and no escaping (the caller escapes); `bold`: False inside
        headings, which are already bold; `links`: False inside link labels."""
        if len(text) > _LONG_LINE:
            return text if plain else _esc(text)
        tokens: list[str] = []
        buf: list[str] = []

        def atom(value: str) -> None:
            buf.append(f"\x02{len(tokens)}\x03")
            tokens.append(value)

        esc: Callable[[str], str] = (lambda s: s) if plain else _esc
        pairs = _bracket_pairs(text) if links and "[" in text else {}
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and text[i + 1] in _ASCII_PUNCT:
                atom(esc(text[i + 1]))
                i += 2
                continue
            if c == "`":
                run = _run_length(text, i, "`")
                close = _code_close(text, i + run, run)
                if close >= 0:
                    content = text[i + run : close].replace("\n", " ")
                    if len(content) > 2 and content[0] == " " == content[-1] and content.strip():
                        content = content[1:-1]
                    if plain or not content.strip():
                        atom(esc(content))
                    else:
                        atom(f"`{_esc(content)}`")
                    i = close + run
                else:
                    atom(esc("`" * run))
                    i += run
                continue
            if links and c == "!" and text.startswith("[", i + 1):
                found = self._link(text, i + 1, pairs)
                if found is not None:
                    label, url, end = found
                    alt = self.convert(label, plain=True, links=False)
                    atom(self._format_link(url, alt, plain=plain, label_is_plain=True))
                    i = end
                    continue
            if links and c == "[":
                found = self._link(text, i, pairs)
                if found is not None:
                    label, url, end = found
                    shown = self.convert(label, plain=plain, bold=bold, links=False)
                    if label.strip() == url.strip():
                        shown = ""  # [https://x](https://x): just the link
                    atom(self._format_link(url, shown, plain=plain, label_is_plain=plain))
                    i = end
                    continue
            if c == "<":
                m = _SLACK_TOKEN.match(text, i)
                if m is not None:
                    ref, bar, label = m.group()[1:-1].partition("|")
                    atom(m.group() if plain else f"<{ref}{bar}{_esc(label)}>")
                    i = m.end()
                    continue
                m = _AUTOLINK.match(text, i)
                if m is not None and not links:
                    atom(esc(m.group(1)))
                    i = m.end()
                    continue
                if m is not None:
                    atom(m.group(1) if plain else f"<{_link_url(m.group(1))}>")
                    i = m.end()
                    continue
                m = _EMAIL_AUTOLINK.match(text, i)
                if m is not None:
                    address = m.group(1)
                    atom(address if plain else f"<mailto:{_link_url(address)}|{_esc(address)}>")
                    i = m.end()
                    continue
                m = _BR.match(text, i)
                if m is not None:
                    atom(" " if plain else "\n")
                    i = m.end()
                    continue
            if c == "&":
                m = _ENTITY.match(text, i)
                if m is not None:
                    atom(esc(html.unescape(m.group())))
                    i = m.end()
                    continue
            if links and c in "hH" and (i == 0 or not text[i - 1].isalnum()):
                m = _BARE_URL.match(text, i)
                if m is not None:
                    url = m.group().rstrip(".,;:!?'\"*_~")
                    while url.endswith(")") and url.count(")") > url.count("("):
                        url = url[:-1]
                    if len(url) > len("https://"):
                        atom(url if plain else f"<{_link_url(url)}>")
                        i += len(url)
                        continue
            buf.append(c)
            i += 1

        work = "".join(buf)
        work = self._emphasis(work, plain=plain, bold=bold)
        if not plain:
            work = _esc(work)
        work = _PLACEHOLDER.sub(lambda m: tokens[int(m.group(1))], work)
        for sentinel, mark in _SENTINELS.items():
            work = work.replace(sentinel, "" if plain else mark)
        return work

    @staticmethod
    def _format_link(url: str, label: str, *, plain: bool, label_is_plain: bool) -> str:
        url = url.strip()
        if plain:
            return label or url
        shown = _esc(label) if label_is_plain else label
        if not url:
            return shown
        if not label.strip():
            return f"<{_link_url(url)}>"
        return f"<{_link_url(url)}|{shown}>"

    def _link(self, text: str, i: int, pairs: Mapping[int, int]) -> tuple[str, str, int] | None:
        """Parses `[label](url "title")`, `[label][ref]`, `[ref][]` or `[ref]` at text[i]."""
        close = pairs.get(i, -1)
        if close < 0:
            return None
        label = text[i + 1 : close]
        k = close + 1
        if k < len(text) and text[k] == "(":
            dest = self._destination(text, k)
            if dest is not None:
                return label, dest[0], dest[1]
        if not self.defs:
            return None
        if k < len(text) and text[k] == "[":
            close2 = pairs.get(k, -1)
            if close2 > 0:
                ref = text[k + 1 : close2] or label
                url = self.defs.get(_norm_label(ref))
                if url is not None:
                    return label, url, close2 + 1
        url = self.defs.get(_norm_label(label))
        if url is not None:
            return label, url, close + 1
        return None

    @staticmethod
    def _destination(text: str, k: int) -> tuple[str, int] | None:
        """Parses `(url "title")` at text[k] == "("; returns (url, index after ")")."""
        m = _DESTINATION.match(text, k)
        if m is None:
            return None
        url = m.group(1) if m.group(1) is not None else m.group(2)
        return _unescape_markdown(url), m.end()

    @staticmethod
    def _emphasis(work: str, *, plain: bool, bold: bool) -> str:
        for pattern, kind in _EMPHASIS:

            def wrap(m: re.Match[str], kind: str = kind) -> str:
                inner = m.group(1)
                opening = closing = ""
                if not plain:
                    if "b" in kind and bold:
                        opening, closing = _BOLD, _BOLD
                    if "i" in kind:
                        opening, closing = opening + _ITALIC, _ITALIC + closing
                    if "s" in kind:
                        opening, closing = _STRIKE, _STRIKE
                if not opening:
                    return inner
                s = m.string
                # Slack only formats at word edges: glue with a zero-width space otherwise.
                before = s[m.start() - 1] if m.start() > 0 else ""
                after = s[m.end()] if m.end() < len(s) else ""
                pre = _ZWSP if before.isalnum() else ""
                post = _ZWSP if after.isalnum() else ""
                return f"{pre}{opening}{inner}{closing}{post}"

            work = pattern.sub(wrap, work)
        return work


class _Converter:
    """Block structure (code, tables, quotes, headings, lists) line by line."""

    def __init__(self, defs: Mapping[str, str]) -> None:
        self.inline = _Inline(defs)

    def lines(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            fence = _fence_open(line)
            if fence is not None:
                i = self._code(lines, i, fence, out)
                continue
            if i + 1 < n and _is_table_start(line, lines[i + 1]):
                end = _table_end(lines, i)
                out.extend(self._table(lines[i:end]))
                i = end
                continue
            if _QUOTE.match(line):
                inner: list[str] = []
                while i < n and (m := _QUOTE.match(lines[i])):
                    inner.append(m.group(1))
                    i += 1
                out.extend(f"> {q}" if q else ">" for q in self.lines(inner))
                continue
            m = _ATX.match(line)
            if m is not None:
                out.append(self._heading(m.group(2) or ""))
                i += 1
                continue
            if (
                i + 1 < n
                and line.strip()
                and _SETEXT.match(lines[i + 1])
                and not _HR.match(line)
                and not _BULLET.match(line)
                and not _ORDERED.match(line)
            ):
                out.append(self._heading(line.strip()))
                i += 2
                continue
            if _HR.match(line):
                out.append(_RULE)
            elif m := _BULLET.match(line):
                indent, content = m.group(1), m.group(2) or ""
                task = _TASK.match(content)
                if task is not None:
                    box = "☐" if task.group(1) == " " else "☑"
                    content = f"{box} {content[task.end() :]}"
                out.append(f"{indent}• {self._text(content)}".rstrip())
            elif m := _ORDERED.match(line):
                indent, number, delim, content = m.groups()
                out.append(f"{indent}{number}{delim} {self._text(content or '')}".rstrip())
            elif not line.strip():
                out.append("")
            else:
                out.append(self._text(line))
            i += 1
        return out

    def _text(self, line: str) -> str:
        stripped = line.rstrip()
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            stripped = stripped[:-1]  # a hard line break; Slack breaks lines anyway
        return self.inline.convert(stripped)

    def _heading(self, text: str) -> str:
        inner = self.inline.convert(text.strip(), bold=False).strip()
        return f"*{inner}*" if inner else ""

    @staticmethod
    def _code(lines: list[str], i: int, fence: _Fence, out: list[str]) -> int:
        """A fenced block, verbatim for Slack (language tag dropped); returns the next index."""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _fence_closes(lines[j], fence):
            content = lines[j]
            strip = 0
            while strip < len(fence.indent) and strip < len(content) and content[strip] in " \t":
                strip += 1
            # Slack ends a code block at any ```: keep an inner one from closing it early.
            body.append(_esc(content[strip:]).replace("```", "`\u200b``"))
            j += 1
        out.append("```")
        out.extend(body or [""])
        out.append("```")
        return j + 1

    def _table(self, rows: list[str]) -> list[str]:
        """A GFM table as an aligned monospace block: mrkdwn has no tables."""
        header = _split_row(rows[0])
        aligns = []
        for cell in _split_row(rows[1]):
            cell = cell.strip()
            if cell.startswith(":") and cell.endswith(":") and len(cell) > 1:
                aligns.append("center")
            elif cell.endswith(":"):
                aligns.append("right")
            else:
                aligns.append("left")
        body = [_split_row(r) for r in rows[2:]]
        grid = [[self._cell(c) for c in row] for row in [header, *body]]
        ncol = max(len(r) for r in grid)
        for r in grid:
            r.extend([""] * (ncol - len(r)))
        aligns.extend(["left"] * (ncol - len(aligns)))
        widths = [max(1, *(_display_width(r[c]) for r in grid)) for c in range(ncol)]

        def fmt(row: list[str]) -> str:
            cells = []
            for c, value in enumerate(row):
                pad = widths[c] - _display_width(value)
                if aligns[c] == "right":
                    cells.append(" " * pad + value)
                elif aligns[c] == "center":
                    cells.append(" " * (pad // 2) + value + " " * (pad - pad // 2))
                else:
                    cells.append(value + " " * pad)
            while len(cells) > 1 and not row[len(cells) - 1]:
                cells.pop()  # ragged rows: no dangling separators
            return " | ".join(cells).rstrip()

        lines = [fmt(grid[0]), "-+-".join("-" * w for w in widths)]
        lines.extend(fmt(r) for r in grid[1:])
        return ["```", *(_esc(line).replace("```", "`\u200b``") for line in lines), "```"]

    def _cell(self, cell: str) -> str:
        text = self.inline.convert(cell.replace("\\|", "|"), plain=True)
        return " ".join(text.split())


def _reference_definitions(lines: list[str]) -> tuple[list[str], dict[str, str]]:
    """Pulls `[label]: url` lines (outside code) out of the text; they are not shown."""
    defs: dict[str, str] = {}
    kept: list[str] = []
    fence: _Fence | None = None
    for line in lines:
        if fence is not None:
            if _fence_closes(line, fence):
                fence = None
            kept.append(line)
            continue
        fence = _fence_open(line)
        m = _REF_DEF.match(line) if fence is None else None
        if m is not None:
            defs.setdefault(_norm_label(m.group(1)), _unescape_markdown(m.group(2)))
            continue
        kept.append(line)
    return kept, defs


def to_mrkdwn(markdown: str) -> str:
    """CommonMark/GFM → Slack mrkdwn, for the places Slack accepts nothing else (`text`,
    section and context blocks). Never raises: unparseable input comes back escaped."""
    try:
        text = _clean(markdown)
        lines, defs = _reference_definitions(text.split("\n"))
        return "\n".join(_Converter(defs).lines(lines))
    except Exception:  # robustness over fidelity: a reply must never fail on its formatting
        return _esc(str(markdown))


# ------------------------------------------------------------------------------ splitting


class MarkdownPiece(NamedTuple):
    """One piece of a split answer: `prefix` and `suffix` are fences added to keep a code
    block intact across pieces; `body` is a slice of the original text."""

    prefix: str
    body: str
    suffix: str

    @property
    def text(self) -> str:
        return self.prefix + self.body + self.suffix


class _Lines:
    """Line offsets of a text with, per line, whether it is inside code and the fence."""

    def __init__(self, text: str) -> None:
        self.starts: list[int] = []
        pos = 0
        for line in text.split("\n"):
            self.starts.append(pos)
            pos += len(line) + 1
        raw = text.split("\n")
        self.kind: list[str] = []  # text | open | code | close
        self.fence: list[_Fence | None] = []
        self.table: list[bool] = [False] * len(raw)
        fence: _Fence | None = None
        for line in raw:
            if fence is None:
                fence = _fence_open(line)
                self.kind.append("open" if fence else "text")
                self.fence.append(fence)
            elif _fence_closes(line, fence):
                self.kind.append("close")
                self.fence.append(fence)
                fence = None
            else:
                self.kind.append("code")
                self.fence.append(fence)
        self.open_at_end = fence is not None
        i = 0
        while i + 1 < len(raw):
            if self.kind[i] == "text" and self.kind[i + 1] == "text":
                if _is_table_start(raw[i], raw[i + 1]):
                    end = _table_end(raw, i)
                    for k in range(i, end):
                        self.table[k] = self.kind[k] == "text"
                    i = end
                    continue
            i += 1
        self.blank = [not line.strip() for line in raw]

    def line_of(self, pos: int) -> int:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def code_at(self, pos: int) -> _Fence | None:
        """The fence a cut before `pos` falls inside (None: outside any code block)."""
        line = self.line_of(pos)
        kind = self.kind[line]
        if self.starts[line] == pos:
            return self.fence[line] if kind in ("code", "close") else None
        return self.fence[line] if kind != "text" else None


def _reopen(fence: _Fence, limit: int) -> str:
    line = fence.line + "\n"
    if len(line) > max(8, limit // 4):
        line = fence.indent + fence.char * fence.length + "\n"
    return line


def _choose_cut(text: str, lines: _Lines, s: int, w: int) -> int:
    """Best cut in (s, w]: a paragraph break, a line break outside code and tables, any line
    break (inside code, or between table rows), then after whitespace, then anywhere that
    keeps characters whole. A break in the first half of the window only wins if nothing
    else is in the second half."""
    half = s + (w - s) // 2
    para = line_out = line_any = -1
    k = lines.line_of(w)
    while k > 0 and lines.starts[k] > s:
        pos = lines.starts[k]
        if _bad_cut(text, pos):  # a line starting with a combining mark, say
            k -= 1
            continue
        if line_any < 0:
            line_any = pos
        if lines.kind[k] not in ("code", "close") and not (lines.table[k] and lines.table[k - 1]):
            if line_out < 0:
                line_out = pos
            if lines.blank[k - 1] and not lines.blank[k]:
                para = pos
                break
        k -= 1
    for candidate in (para, line_out, line_any):
        if candidate >= half:
            return candidate
    best = max(para, line_out, line_any)
    if best > s:
        return best
    window = text[half:w]
    space = max(window.rfind(" "), window.rfind("\t"))
    cut = half + space + 1 if space >= 0 else w
    if cut <= s:
        cut = w
    return _safe_cut(text, cut, s)


def split_markdown_pieces(markdown: str, limit: int = DEFAULT_SPLIT_LIMIT) -> list[MarkdownPiece]:
    """Like `split_markdown`, but says which fences were added: `"".join(p.body ...)` is the
    input. Advance through a buffer by `len(piece.body)`; show `piece.text`."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = markdown
    if not text:
        return []
    if len(text) <= limit:
        return [MarkdownPiece("", text, "")]
    lines = _Lines(text)
    fences = [f for f in lines.fence if f is not None]
    reserve = max((1 + len(f.closer()) for f in fences), default=0)
    max_prefix = max((len(_reopen(f, limit)) for f in fences), default=0)
    # Fence repair needs room for a reopened fence, a closing one and some text.
    repair = bool(fences) and limit - reserve - max_prefix >= 1

    pieces: list[MarkdownPiece] = []
    s, prefix, n = 0, "", len(text)
    while s < n:
        if len(prefix) + n - s <= limit:
            w = n
        else:
            w = min(n, s + max(1, limit - len(prefix) - (reserve if repair else 0)))
        while True:
            cut = n if w == n else _choose_cut(text, lines, s, w)
            body = text[s:cut]
            suffix = ""
            if repair:
                open_fence = _fence_end_state(prefix + body)
                if open_fence is not None and not (cut == n and lines.open_at_end):
                    suffix = ("" if body.endswith("\n") else "\n") + open_fence.closer()
            excess = len(prefix) + len(body) + len(suffix) - limit
            if excess <= 0:
                break
            w = cut - excess
            if w <= s:  # no room for the fences here: plain cut, no repair for this piece
                prefix, suffix = "", ""
                w = min(n, s + limit)
                cut = n if w == n else _choose_cut(text, lines, s, w)
                body = text[s:cut]
                break
        pieces.append(MarkdownPiece(prefix, body, suffix))
        s = cut
        fence = lines.code_at(cut) if repair and cut < n else None
        prefix = _reopen(fence, limit) if fence is not None else ""
    return pieces


def split_markdown(markdown: str, limit: int = DEFAULT_SPLIT_LIMIT) -> list[str]:
    """Splits a long answer into pieces of at most `limit` chars (one Slack call or block
    each), at paragraph, then line, then word boundaries. A code block cut in two is closed
    at the end of one piece and reopened (same fence and language) at the start of the next;
    table rows, surrogate pairs and combining sequences are never torn (unless a single row
    is longer than a piece). Empty input gives []."""
    return [piece.text for piece in split_markdown_pieces(markdown, limit)]


# ------------------------------------------------------------------------------ citations


@dataclass(frozen=True)
class Source:
    """A cited file, numbered in order of first citation in the answer."""

    number: int
    file_id: str
    filename: str
    quote: str | None = None
    page: int | None = None


# A marker the model copied from file_search output: 【4:0†source】, 【13†report.pdf】.
_MARKER = re.compile(r"[ \t]*【[^【】\n]{0,256}?†[^【】\n]{0,256}】")
# A marker cut off (streaming, or a model that stopped mid-marker): 【, 【4:, 【4:0†sou…
_PARTIAL_MARKER = re.compile(
    r"[ \t]*【(?:\d+:\d*(?:†[^【】\n]*)?】?|\d*†[^【】\n]*|\d*(?=[ \t]*(?:【|\n|$)))"
)
_MARKER_NAME = re.compile(r"†([^【】†\n]+)】")
_SANDBOX_LINK = re.compile(r"(!?)\[([^\[\]\n]*)\]\((sandbox:[^\s()]*)\)")


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dumped
    return {}


def _strip_markers(text: str) -> str:
    """Removes citation markers nobody annotated, and cut-off ones. A 【 followed by ordinary
    text (CJK punctuation, 【重要】) is not a marker and stays."""

    def drop(m: re.Match[str]) -> str:
        s = m.string
        before = s[m.start() - 1] if m.start() > 0 else ""
        after = s[m.end()] if m.end() < len(s) else ""
        had_space = m.group().startswith((" ", "\t"))
        return " " if had_space and before.isalnum() and after.isalnum() else ""

    # Removing one marker can join the text around it into another ("【a【1†x】†】"):
    # repeat until nothing marker-shaped is left.
    while True:
        stripped = _PARTIAL_MARKER.sub("", _MARKER.sub(drop, text))
        if stripped == text:
            break
        text = stripped
    return _SANDBOX_LINK.sub(lambda m: m.group(2) or m.group(3).rsplit("/", 1)[-1], text)


def _locate(
    text: str, annotation: Mapping[str, Any], taken: list[tuple[int, int]]
) -> tuple[int, int] | None:
    """The annotation's span: its indices if they hold its text, else the nearest free
    occurrence of that text (engines have been known to count differently)."""
    start, end, quoted = (
        annotation.get("start_index"),
        annotation.get("end_index"),
        annotation.get("text"),
    )
    quoted = quoted if isinstance(quoted, str) and quoted else None

    def free(a: int, b: int) -> bool:
        return all(b <= x or a >= y for x, y in taken)

    if (
        isinstance(start, int)
        and isinstance(end, int)
        and 0 <= start < end <= len(text)
        and (quoted is None or text[start:end] == quoted)
        and free(start, end)
    ):
        return start, end
    if quoted is None:
        return None
    hint = start if isinstance(start, int) else 0
    best: tuple[int, int] | None = None
    pos = text.find(quoted)
    while pos >= 0:
        span = (pos, pos + len(quoted))
        if free(*span) and (best is None or abs(pos - hint) < abs(best[0] - hint)):
            best = span
        pos = text.find(quoted, pos + 1)
    return best


def _file_path_replacement(
    text: str, start: int, end: int, name: str, link: str | None
) -> tuple[int, int, str]:
    """A `sandbox:` path → `[name](permalink)` or the bare name. When the path is the target
    of a Markdown link (`[Download](sandbox:…)`), the whole link is rewritten."""
    if text[start - 2 : start] == "](" and text[end : end + 1] == ")":
        depth, j = 0, start - 2
        while j >= 0 and text[j] != "\n":
            if text[j] == "]":
                depth += 1
            elif text[j] == "[":
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        if j >= 0 and text[j] == "[":
            label = text[j + 1 : start - 2]
            first = j - 1 if j > 0 and text[j - 1] == "!" else j
            if link:
                return first, end + 1, f"[{label or name}]({link})"
            shown = label if (not label or name in label) else f"{label} ({name})"
            return first, end + 1, shown or name
    return start, end, f"[{name}]({link})" if link else name


def _start_index(annotation: Mapping[str, Any]) -> int:
    value = annotation.get("start_index")
    return value if isinstance(value, int) else 0


def render_citations(
    text: str,
    annotations: Sequence[Mapping[str, Any]],
    filenames: Mapping[str, str],
    quotes: Mapping[str, str] | None = None,
    *,
    links: Mapping[str, str] | None = None,
) -> tuple[str, list[Source]]:
    """Turns citation markers into footnotes `[n]` and `sandbox:` paths into links.

    `annotations`: the text part's annotations (dicts, or the SDK's pydantic objects), in any
    order; indices are Python str indices. `filenames`: file_id → name; `quotes`: a quote
    per marker text or per file_id; `links`: file_id → Slack permalink of a file the code
    interpreter wrote. Sources are numbered by first appearance, one number per file, and
    adjacent duplicates collapse (`[1][1]` → `[1]`). Markers without an annotation (and a
    half marker at the very end) are removed: Slack never shows a `【…】` marker."""
    quotes = quotes or {}
    links = links or {}
    # (start, end, replacement for file_path or None, annotation)
    spans: list[tuple[int, int, str | None, Mapping[str, Any]]] = []
    taken: list[tuple[int, int]] = []
    ordered = sorted((_as_mapping(a) for a in annotations), key=_start_index)
    for annotation in ordered:
        kind = annotation.get("type")
        if kind not in ("file_citation", "file_path"):
            continue
        span = _locate(text, annotation, taken)
        if span is None:
            continue
        start, end = span
        replacement: str | None = None
        if kind == "file_path":
            file_id = str(_as_mapping(annotation.get("file_path")).get("file_id") or "")
            target = text[start:end]
            name = filenames.get(file_id) or target.rstrip("/").rsplit("/", 1)[-1] or target
            start, end, replacement = _file_path_replacement(
                text, start, end, name, links.get(file_id)
            )
        taken.append((start, end))
        spans.append((start, end, replacement, annotation))
    spans.sort(key=lambda item: item[0])

    out: list[str] = []
    numbers: dict[str, int] = {}
    sources: list[Source] = []
    last_number: int | None = None  # the footnote just written, if nothing visible followed
    pos = 0
    for start, end, replacement, annotation in spans:
        if start < pos:
            continue
        between = _strip_markers(text[pos:start])
        pos = end
        if between.strip():
            last_number = None
        if replacement is not None:
            out.extend((between, replacement))
            last_number = None
            continue
        info = _as_mapping(annotation.get("file_citation"))
        file_id = str(info.get("file_id") or "")
        if not file_id:  # a marker we cannot attribute: drop it like an unknown one
            out.append(between)
            continue
        marker = text[start:end]
        number = numbers.get(file_id)
        if number is None:
            number = len(sources) + 1
            numbers[file_id] = number
            named = _MARKER_NAME.search(marker)
            from_marker = named.group(1).strip() if named else ""
            if from_marker.lower() == "source":
                from_marker = ""
            quote = quotes.get(marker) or quotes.get(file_id) or info.get("quote") or None
            sources.append(
                Source(
                    number=number,
                    file_id=file_id,
                    filename=filenames.get(file_id) or from_marker or file_id,
                    quote=str(quote) if quote else None,
                )
            )
        if last_number == number:
            continue  # [1][1] → [1] (whitespace between them goes too)
        out.extend((between, f"[{number}]"))
        last_number = number
    out.append(_strip_markers(text[pos:]))
    # Pieces of a marker on both sides of a replaced one can join into a new one
    # ("【word 【4:0†x】†】" → "【word [1]†】"): strip the whole once more.
    return _strip_markers("".join(out)), sources


def _short_quote(quote: str) -> str:
    words = " ".join(quote.split())
    if len(words) <= _QUOTE_CHARS:
        return words
    cut = words.rfind(" ", 0, _QUOTE_CHARS)
    if cut < _QUOTE_CHARS // 2:
        cut = _QUOTE_CHARS
    cut = _safe_cut(words, cut, 0)
    return words[:cut].rstrip(" ,;:.-") + _ELLIPSIS


def _source_line(source: Source, escape: Callable[[str], str]) -> str:
    line = f"[{source.number}] {escape(source.filename)}"
    if source.page is not None:
        line += f" (p. {source.page})"
    if source.quote and source.quote.strip():
        line += f' — "{escape(_short_quote(source.quote))}"'
    return line


def sources_block(sources: Sequence[Source]) -> dict[str, Any]:
    """A `context` block listing the sources (`[n] name (p. X) — "quote…"`), within Slack's
    10 elements of ≤ 3,000 chars: one element per source, grouped when there are more."""
    if not sources:
        raise ValueError("sources_block needs at least one source")
    lines = [_source_line(s, _esc) for s in sources]
    per = -(-len(lines) // CONTEXT_MAX_ELEMENTS)
    elements = []
    for i in range(0, len(lines), per):
        chunk = "\n".join(lines[i : i + per])
        elements.append({"type": "mrkdwn", "text": _truncate(chunk, CONTEXT_ELEMENT_LIMIT)})
    return {"type": "context", "elements": elements}


_MD_SPECIAL = re.compile(r"([\\`*_~\[\]<>|#])")


def _md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def sources_markdown(sources: Sequence[Source]) -> str:
    """A Markdown "Sources" list to append to a streamed answer ("" without sources)."""
    if not sources:
        return ""
    items = [f"- {_source_line(s, _md_escape)}" for s in sources]
    return "\n\n**Sources**\n" + "\n".join(items) + "\n"


# ------------------------------------------------------------------------ blocks and text


def markdown_blocks(markdown: str, limit: int = DEFAULT_SPLIT_LIMIT) -> list[dict[str, Any]]:
    """`markdown` blocks for chat.postMessage/chat.update, each ≤ `limit` chars ([] for
    blank input). Slack also caps all markdown blocks of one message at 12,000 chars in
    total, so a list longer than one block belongs in several messages."""
    limit = min(limit, MARKDOWN_BLOCK_LIMIT)
    return [
        {"type": "markdown", "text": piece}
        for piece in split_markdown(markdown, limit)
        if piece.strip()
    ]


def _truncate(mrkdwn: str, limit: int) -> str:
    """Cuts mrkdwn to ≤ limit chars at a safe place and marks the cut with `…`: never inside
    an entity or a `<link|…>`, and a code block or code span left open is closed."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    if limit < 8:
        cut = _safe_cut(mrkdwn, limit - 1, 0) if limit > 1 else 0
        return (mrkdwn[:cut] + _ELLIPSIS)[:limit]
    room = limit - len(_ELLIPSIS) - len("\n```")
    half = room // 2
    cut = -1
    for sep in ("\n\n", "\n", " "):
        found = mrkdwn.rfind(sep, half, room)
        if found >= 0:
            cut = found
            break
    if cut < 0:
        cut = _safe_cut(mrkdwn, room, 0)
    head = mrkdwn[:cut]
    lt, gt = head.rfind("<"), head.rfind(">")
    if lt > gt:
        head = head[:lt]  # inside <url|label>: drop the partial link
    amp = head.rfind("&", max(0, len(head) - 10))
    if amp >= 0 and ";" not in head[amp:]:
        head = head[:amp]  # inside &amp; / &lt; / &gt;
    head = head.rstrip()
    if head.count("```") % 2 == 1:
        return head + _ELLIPSIS + "\n```"
    if head.rsplit("\n", 1)[-1].replace("```", "").count("`") % 2 == 1:
        return head + _ELLIPSIS + "`"
    return head + _ELLIPSIS


def fallback_text(markdown: str, limit: int = 3_000) -> str:
    """The mrkdwn `text` of a message (notifications, clients without blocks), ≤ limit."""
    return _truncate(to_mrkdwn(markdown), limit)
