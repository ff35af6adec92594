"""Chunking: token estimates and splitting pages into overlapping, boundary-aligned chunks.

Tokens are estimated locally, with no tokenizer download (tiktoken fetches its BPE files at run
time). `count_tokens` approximates OpenAI's o200k_base count: over this project's docs, Python
sources, JSON, CSV, German and French samples it is within 6 % on average and 19 % at worst
(it undercounts long German compounds most). Chunk sizes are therefore "about N tokens", which
is what the hosted chunker's limits are for: bounding what one search hit puts in the prompt.

A chunk is built from whole units: sentences (or lines, for code and lists), and a unit longer
than a quarter of the chunk is cut at word boundaries, a single overlong "word" (base64, a
minified line) at character boundaries. Cuts prefer a paragraph break when one leaves the chunk
at least half full. Consecutive chunks share up to `overlap` tokens of whole trailing units.
Chunks run across page breaks; a chunk's `page` is the page its first unit came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from assistants.retrieval.extract import Page

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_OVERLAP",
    "Chunk",
    "chunk_pages",
    "count_tokens",
    "validate_static_strategy",
]

DEFAULT_MAX_TOKENS = 800
DEFAULT_OVERLAP = 400
MIN_MAX_TOKENS = 100
MAX_MAX_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    page: int | None
    tokens: int


# -- token estimate ---------------------------------------------------------------------------

# Letter runs (any script), digit runs, whitespace runs, punctuation runs.
_PIECE = re.compile(r"[^\W\d_]+|\d+|\s+|[^\w\s]+|_+")


def count_tokens(text: str) -> int:
    """Estimated o200k_base token count of `text` (no tokenizer needed; see module docstring)."""
    return round(_estimate(text))


def _estimate(text: str) -> float:
    n = 0.0
    for match in _PIECE.finditer(text):
        s = match.group()
        c = s[0]
        size = len(s)
        if c.isalpha():
            if s.isascii():
                # Common words up to 12 letters are one token; longer ones split every ~8.
                n += 1 if size <= 12 else 1 + (size - 5) // 8
            elif ord(c) >= 0x2E80:  # CJK and later scripts: about a token per character
                n += size
            else:  # accented Latin, Cyrillic, Greek ...
                n += 1 + size / 6
        elif c.isdigit():
            n += (size + 2) // 3  # digits are grouped by three
        elif c.isspace():
            n += 0 if s == " " else 0.75  # a single space joins the next word
        else:
            n += (size + 3) // 4
    return n


# -- splitting --------------------------------------------------------------------------------

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace
# and an upper-case letter, digit or opening quote; a line break always ends a unit.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9À-Þ])|\n")
_PARAGRAPH = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")
_WORD = re.compile(r"\S+\s*")


@dataclass(slots=True)
class _Unit:
    text: str
    tokens: int
    page: int | None
    paragraph_start: bool
    glued: bool = False  # continues the previous unit's word (a cut inside a long word)


def _units(pages: Iterable[Page], cap: int) -> list[_Unit]:
    units: list[_Unit] = []
    for page in pages:
        text = page.text.replace("\r\n", "\n").replace("\r", "\n")
        for paragraph in _PARAGRAPH.split(text):
            paragraph = paragraph.strip("\n").rstrip()
            if not paragraph.strip():
                continue
            first = True
            for sentence in _split_keep(_SENTENCE_END, paragraph):
                for piece, glued in _cap(sentence, cap):
                    tokens = max(1, count_tokens(piece))
                    units.append(_Unit(piece, tokens, page.number, first, glued and not first))
                    first = False
        # Paragraph boundaries survive in the joined text as blank lines.
    return units


def _split_keep(pattern: re.Pattern[str], text: str) -> list[str]:
    """Splits after each match, keeping the separator at the end of the left part."""
    parts: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        end = match.end()
        if end > start:
            parts.append(text[start:end])
            start = end
    if start < len(text):
        parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _cap(sentence: str, cap: int) -> list[tuple[str, bool]]:
    """Cuts a unit longer than `cap` tokens at word, else character, boundaries.

    Returns (piece, glued) pairs; a glued piece continues the previous piece's word.
    """
    if count_tokens(sentence) <= cap:
        return [(sentence, False)]
    pieces: list[tuple[str, bool]] = []
    current: list[str] = []
    size = 0.0
    for match in _WORD.finditer(sentence):
        word = match.group()
        tokens = _estimate(word)
        if tokens > cap:
            if current:
                pieces.append(("".join(current), False))
                current, size = [], 0.0
            cuts = _cut_chars(word.rstrip(), cap)
            pieces.extend((cut, i > 0) for i, cut in enumerate(cuts))
            continue
        if size + tokens > cap and current:
            pieces.append(("".join(current), False))
            current, size = [], 0.0
        current.append(word)
        size += tokens
    if current:
        pieces.append(("".join(current), False))
    return pieces


def _cut_chars(word: str, cap: int) -> list[str]:
    # One character is at most one token, so a piece always fits; each piece grows (doubling)
    # while it fits and shrinks (halving) until it does: ASCII runs pack ~8 characters a token.
    pieces: list[str] = []
    i, step = 0, cap
    while i < len(word):
        while i + step < len(word) and count_tokens(word[i : i + step * 2]) <= cap:
            step *= 2
        while step > 1 and count_tokens(word[i : i + step]) > cap:
            step //= 2
        pieces.append(word[i : i + step])
        i += step
    return pieces


# -- packing ----------------------------------------------------------------------------------


def chunk_pages(
    pages: Sequence[Page],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: int = DEFAULT_OVERLAP,
) -> list[Chunk]:
    """Splits extracted pages into chunks of at most about `max_tokens` estimated tokens.

    CPU-bound: call it through `asyncio.to_thread` from async code.

    >>> chunk_pages([Page(None, "One. Two.")], max_tokens=100, overlap=0)[0].text
    'One. Two.'
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if overlap < 0 or overlap > max_tokens // 2:
        raise ValueError("overlap must be between 0 and half of max_tokens")
    units = _units(pages, cap=max(1, max_tokens // 4))
    chunks: list[Chunk] = []
    start = 0
    n = len(units)
    while start < n:
        end, size = start, 0
        while end < n and size + units[end].tokens <= max_tokens:
            size += units[end].tokens
            end += 1
        if end == start:  # cannot happen with capped units, but never loop forever
            end, size = start + 1, units[start].tokens
        if end < n:
            end = _paragraph_cut(units, start, end, max_tokens)
            size = sum(u.tokens for u in units[start:end])
        chunks.append(
            Chunk(
                index=len(chunks),
                text=_join(units[start:end]),
                page=units[start].page,
                tokens=size,
            )
        )
        if end >= n:
            break
        start = _overlap_start(units, start, end, overlap)
    return chunks


def _paragraph_cut(units: list[_Unit], start: int, end: int, max_tokens: int) -> int:
    """Moves the cut back to the last paragraph start that keeps the chunk half full."""
    size = sum(u.tokens for u in units[start:end])
    for i in range(end - 1, start, -1):
        size -= units[i].tokens
        if size < max_tokens // 2:
            break
        if units[i].paragraph_start:
            return i
    return end


def _overlap_start(units: list[_Unit], start: int, end: int, overlap: int) -> int:
    """The first unit of the next chunk: whole trailing units worth at most `overlap`."""
    k, size = end, 0
    while k - 1 > start and size + units[k - 1].tokens <= overlap:
        k -= 1
        size += units[k].tokens
    return k


def _join(units: Sequence[_Unit]) -> str:
    parts: list[str] = []
    for i, unit in enumerate(units):
        text = unit.text.rstrip()
        if i == 0:
            parts.append(text)
        elif unit.glued:
            parts.append(text)
        elif unit.paragraph_start:
            parts.append("\n\n" + text)
        elif units[i - 1].text.endswith("\n"):
            parts.append("\n" + text)
        else:
            parts.append(" " + text)
    return "".join(parts).strip("\n")


# -- the hosted static strategy's bounds ------------------------------------------------------


def validate_static_strategy(max_chunk_size_tokens: object, chunk_overlap_tokens: object) -> None:
    """Raises ValueError worded like the hosted API for a static chunking strategy out of bounds.

    Bounds: `max_chunk_size_tokens` 100..4096; `chunk_overlap_tokens` 0..half of it.
    """
    prefix = "Invalid 'chunking_strategy.static."
    for name, value in (
        ("max_chunk_size_tokens", max_chunk_size_tokens),
        ("chunk_overlap_tokens", chunk_overlap_tokens),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{prefix}{name}': expected an integer, but got {value!r} instead.")
    assert isinstance(max_chunk_size_tokens, int) and isinstance(chunk_overlap_tokens, int)
    if max_chunk_size_tokens < MIN_MAX_TOKENS:
        raise ValueError(
            f"{prefix}max_chunk_size_tokens': integer below minimum value. Expected a value "
            f">= {MIN_MAX_TOKENS}, but got {max_chunk_size_tokens} instead."
        )
    if max_chunk_size_tokens > MAX_MAX_TOKENS:
        raise ValueError(
            f"{prefix}max_chunk_size_tokens': integer above maximum value. Expected a value "
            f"<= {MAX_MAX_TOKENS}, but got {max_chunk_size_tokens} instead."
        )
    if chunk_overlap_tokens < 0:
        raise ValueError(
            f"{prefix}chunk_overlap_tokens': integer below minimum value. Expected a value "
            f">= 0, but got {chunk_overlap_tokens} instead."
        )
    if chunk_overlap_tokens > max_chunk_size_tokens // 2:
        raise ValueError(
            f"{prefix}chunk_overlap_tokens': chunk_overlap_tokens must not exceed half of "
            f"max_chunk_size_tokens ({max_chunk_size_tokens // 2}), but got "
            f"{chunk_overlap_tokens} instead."
        )
