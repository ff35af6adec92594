"""Text extraction: the searchable text of an uploaded file, page by page where pages exist.

Types are recognised by extension first, then by MIME type. PDF (pypdf) and DOCX
(python-docx) are parsed; HTML is reduced to its visible text; JSON is pretty-printed; CSV rows
become `header: value` lines; everything else on the list is decoded as text. Decoding tries
UTF-8, a UTF-8/16/32 byte-order mark, then Windows-1252 and Latin-1; bytes that look binary
(NULs, many control characters) are refused rather than decoded into noise.

Hostile input is bounded: at most `MAX_PAGES` PDF pages, `MAX_PDF_SECONDS` of PDF parsing
(checked between pages) and `MAX_CHARS` characters of text; DOCX archives that would inflate
past `MAX_UNPACKED` are refused before parsing. A single pathological page can still take long
inside pypdf: for hard limits run extraction in a worker process with a timeout. Parsing is
CPU-bound and synchronous: call `extract_text` through `asyncio.to_thread`.

Errors (both `InvalidRequest`s, carrying the hosted `last_error.code`):
    UnsupportedFile   the type is not one we extract (code "unsupported_file")
    InvalidFile       the type is supported but the content is unusable (code "invalid_file")
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import time
import zipfile
from dataclasses import dataclass
from typing import Any

from assistants.errors import InvalidRequest

__all__ = [
    "MAX_CHARS",
    "MAX_PAGES",
    "SUPPORTED_EXTENSIONS",
    "InvalidFile",
    "Page",
    "UnsupportedFile",
    "extract_text",
]

log = logging.getLogger("assistants.retrieval")

MAX_PAGES = 2_000
MAX_CHARS = 20_000_000  # ~5M tokens, the hosted per-file limit
MAX_UNPACKED = 256 * 1024 * 1024
MAX_PDF_SECONDS = 120.0  # checked between pages


@dataclass(frozen=True, slots=True)
class Page:
    number: int | None  # 1-based page number (PDF); None where a format has no pages
    text: str


class UnsupportedFile(InvalidRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, param="file_id", code="unsupported_file")


class InvalidFile(InvalidRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, param="file_id", code="invalid_file")


_CODE = (
    "py pyi js mjs cjs jsx ts tsx java kt kts scala go rs c h cc cpp cxx hpp hh cs rb php pl "
    "pm swift m mm r lua dart ex exs erl hs clj sh bash zsh fish ps1 bat sql graphql proto "
    "yaml yml toml ini cfg conf properties env gradle cmake mk makefile dockerfile tf hcl "
    "css scss sass less vue svelte xml svg tex bib rst adoc org log diff patch ipynb"
).split()
_KINDS: dict[str, str] = {
    **{ext: "text" for ext in _CODE},
    "txt": "text",
    "text": "text",
    "md": "text",
    "markdown": "text",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "json": "json",
    "jsonl": "text",
    "csv": "csv",
    "tsv": "csv",
    "pdf": "pdf",
    "docx": "docx",
}
SUPPORTED_EXTENSIONS = frozenset(_KINDS)

_MIME_KINDS = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/json": "json",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/x-sh": "text",
    "application/javascript": "text",
    "application/typescript": "text",
    "application/x-yaml": "text",
    "application/yaml": "text",
    "application/toml": "text",
    "application/xml": "text",
    "application/sql": "text",
}
_ADVICE = {
    "doc": " Save it as .docx or PDF and upload it again.",
    "pptx": " Export it as PDF and upload it again.",
    "ppt": " Export it as PDF and upload it again.",
    "xlsx": " Export the sheets as CSV and upload them again.",
    "xls": " Export the sheets as CSV and upload them again.",
    "rtf": " Save it as .docx or plain text and upload it again.",
    "odt": " Save it as .docx or PDF and upload it again.",
}


def extract_text(data: bytes, filename: str, mimetype: str | None = None) -> list[Page]:
    """The text of `data`, as pages (one page with `number=None` for page-less formats).

    Raises `UnsupportedFile` for a type not on the list and `InvalidFile` for content that
    yields no text (empty, corrupt, encrypted, binary, scanned without a text layer, too big).
    """
    kind = _kind(filename, mimetype)
    if not data.strip():
        raise InvalidFile(f"The file '{filename}' is empty.")
    if kind == "pdf":
        pages = _pdf(data, filename)
    elif kind == "docx":
        pages = [Page(None, _docx(data, filename))]
    else:
        text = _decode(data, filename)
        if kind == "html":
            text = _html(text)
        elif kind == "json":
            text = _json(text)
        elif kind == "csv":
            text = _csv(text, tab=filename.lower().endswith(".tsv"))
        pages = [Page(None, _clean(text))]
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        if kind == "pdf":
            raise InvalidFile(
                f"No text could be extracted from '{filename}'. If it is a scanned document, "
                "run it through OCR and upload the result."
            )
        raise InvalidFile(f"The file '{filename}' contains no text.")
    total = sum(len(p.text) for p in pages)
    if total > MAX_CHARS:
        raise InvalidFile(
            f"The file '{filename}' has too much text ({total:,} characters; the limit is "
            f"{MAX_CHARS:,}). Split it into smaller files and upload those."
        )
    return pages


def _kind(filename: str, mimetype: str | None) -> str:
    name = filename.rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name  # "Makefile", "Dockerfile"
    if ext in _KINDS:
        return _KINDS[ext]
    mime = (mimetype or "").split(";", 1)[0].strip().lower()
    if mime in _MIME_KINDS:
        return _MIME_KINDS[mime]
    if mime.startswith("text/"):
        return "text"
    shown = f"'.{ext}'" if "." in name else f"'{filename}' (no extension)"
    raise UnsupportedFile(
        f"Files of type {shown}{f' ({mime})' if mime else ''} are not supported for search. "
        "Supported types: PDF, DOCX, HTML, Markdown, plain text, JSON, CSV and source code."
        + _ADVICE.get(ext, "")
    )


# -- text -------------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, LF, FF, CR (and ESC, common in logs) mark binary data.
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _decode(data: bytes, filename: str) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                raise InvalidFile(
                    f"The file '{filename}' starts with a {codec.upper()} byte-order mark but "
                    "is not valid text in that encoding. Save it as UTF-8 and upload it again."
                ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    sample = text[:65536]
    if "\x00" in sample or len(_BINARY.findall(sample)) > max(8, len(sample) // 100):
        raise InvalidFile(
            f"The file '{filename}' does not look like text (it contains binary data). "
            "Upload it as UTF-8 text, or in a supported document format."
        )
    return text


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _ANSI.sub("", text)  # terminal colours in logs
    text = _BINARY.sub("", text).replace("\x1b", "")  # stray controls would poison the index
    return text.strip()


def _html(text: str) -> str:
    from bs4 import BeautifulSoup

    try:
        import lxml  # noqa: F401

        parser = "lxml"
    except ImportError:  # pragma: no cover - lxml is a dependency, html.parser the fallback
        parser = "html.parser"
    soup = BeautifulSoup(text, parser)
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "object"]):
        tag.decompose()
    raw = soup.get_text("\n")
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    # Collapse the runs of empty lines that markup leaves into single paragraph breaks.
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _json(text: str) -> str:
    try:
        value: Any = json.loads(text)
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text  # JSON Lines, or JSON with comments: still worth searching as text


def _csv(text: str, *, tab: bool) -> str:
    sample = text[:65536]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters="\t" if tab else ",;\t|")
        header = csv.Sniffer().has_header(sample)
    except csv.Error:
        dialect, header = (csv.excel_tab if tab else csv.excel), False
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error:
        return text
    if not rows:
        return ""
    if header and len(rows) > 1:
        names = [h.strip() for h in rows[0]]
        lines = [
            "; ".join(f"{n}: {v.strip()}" for n, v in zip(names, row, strict=False) if v.strip())
            for row in rows[1:]
        ]
        return "\n".join([", ".join(names), *lines])
    return "\n".join(", ".join(v.strip() for v in row) for row in rows)


# -- PDF --------------------------------------------------------------------------------------


def _pdf(data: bytes, filename: str) -> list[Page]:
    from pypdf import PdfReader

    if b"%PDF-" not in data[:1024]:
        raise InvalidFile(f"The file '{filename}' is not a valid PDF (no PDF header).")
    # Hostile input: pypdf raises a wide variety of exception types on malformed files
    # (PdfReadError, ValueError, KeyError, AssertionError, RecursionError ...).
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidFile(
                f"The PDF '{filename}' is password-protected. Remove the password and upload "
                "it again."
            )
        count = len(reader.pages)
    except InvalidFile:
        raise
    except Exception as exc:
        raise InvalidFile(
            f"The file '{filename}' could not be read as a PDF; it may be damaged. "
            "Re-export or re-save it and upload it again."
        ) from exc
    if count > MAX_PAGES:
        raise InvalidFile(
            f"The PDF '{filename}' has {count:,} pages; the limit is {MAX_PAGES:,}. "
            "Split it into smaller files and upload those."
        )
    pages: list[Page] = []
    total = 0
    failed = 0
    deadline = time.monotonic() + MAX_PDF_SECONDS
    for number in range(1, count + 1):
        if time.monotonic() > deadline:
            raise InvalidFile(
                f"Reading the PDF '{filename}' took too long (stopped at page {number} of "
                f"{count}). Re-export it (for example with 'Print to PDF') and upload it again."
            )
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception:  # one bad page (broken font, stream) should not lose the rest
            failed += 1
            continue
        total += len(text)
        if total > MAX_CHARS:
            raise InvalidFile(
                f"The PDF '{filename}' has too much text (over {MAX_CHARS:,} characters). "
                "Split it into smaller files and upload those."
            )
        pages.append(Page(number, _clean(text)))
    if failed:
        log.warning(
            "pdf %r: text of %d of %d pages could not be extracted", filename, failed, count
        )
        if failed == count:
            raise InvalidFile(
                f"The file '{filename}' could not be read as a PDF; it may be damaged. "
                "Re-export or re-save it and upload it again."
            )
    return pages


# -- DOCX -------------------------------------------------------------------------------------


def _docx(data: bytes, filename: str) -> str:
    damaged = InvalidFile(
        f"The file '{filename}' could not be read as a Word document (.docx); it may be "
        "damaged. Re-save it in Word and upload it again."
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise damaged from exc
    if unpacked > MAX_UNPACKED:
        raise InvalidFile(
            f"The document '{filename}' unpacks to more than {MAX_UNPACKED // 2**20} MB. "
            "Split it into smaller files and upload those."
        )

    import docx
    from docx.table import Table

    # Hostile input: python-docx/lxml raise assorted types (KeyError, XMLSyntaxError ...).
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = []
                for row in item.rows:
                    cells = [" ".join(cell.text.split()) for cell in row.cells]
                    # Merged cells repeat; keep each text once per row.
                    rows.append(" | ".join(dict.fromkeys(c for c in cells if c)))
                blocks.append("\n".join(r for r in rows if r))
            else:
                blocks.append(item.text)
    except Exception as exc:
        raise damaged from exc
    return "\n\n".join(b for b in blocks if b.strip())
