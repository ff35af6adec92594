"""Text extraction: formats, decoding, and the errors a user can act on."""

from __future__ import annotations

import io
import json
import zlib

import pytest

from assistants.retrieval import InvalidFile, Page, UnsupportedFile, extract_text
from assistants.retrieval import extract as extract_module


def make_pdf(pages: list[str], *, compress: bool = False) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (xref offsets exact)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, line in enumerate(pages):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        extra = b""
        if compress:
            stream, extra = zlib.compress(stream), b" /Filter /FlateDecode"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(
            b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream + b"\nendstream"
        )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# -- text types -------------------------------------------------------------------------------


def test_plain_text_and_markdown_are_one_page_without_number() -> None:
    assert extract_text(b"Hello world.\n", "notes.txt") == [Page(None, "Hello world.")]
    (page,) = extract_text("# Title\n\nBody – ünïcode".encode(), "README.md")
    assert page.text == "# Title\n\nBody – ünïcode"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("\ufeffwith bom".encode(), "with bom"),
        ("utf-16 text ✓".encode("utf-16"), "utf-16 text ✓"),
        ("caf\xe9 \u201cquoted\u201d".encode("cp1252"), "café “quoted”"),
        (b"caf\xe9 \x81", "café \x81"),  # not cp1252 either: Latin-1
    ],
)
def test_decoding_fallbacks(data: bytes, expected: str) -> None:
    assert extract_text(data, "a.txt")[0].text == expected


def test_binary_data_in_a_text_file_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="does not look like text"):
        extract_text(b"\x00\x01\x02binary\x00" * 50, "data.txt")


def test_broken_utf16_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="UTF-16"):
        extract_text(b"\xff\xfea\x00b", "odd.txt")


@pytest.mark.parametrize("data", [b"", b"   \n\t  "])
def test_empty_files_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidFile, match="empty") as caught:
        extract_text(data, "empty.md")
    assert caught.value.code == "invalid_file"


def test_unsupported_types_name_the_type() -> None:
    with pytest.raises(UnsupportedFile, match=r"'\.exe'") as caught:
        extract_text(b"MZ\x90\x00", "setup.exe")
    assert caught.value.code == "unsupported_file"
    with pytest.raises(UnsupportedFile, match=r"'\.xlsx'.*CSV"):
        extract_text(b"PK\x03\x04", "budget.xlsx")
    with pytest.raises(UnsupportedFile, match="no extension"):
        extract_text(b"data", "blob")


def test_mimetype_decides_when_the_extension_is_unknown() -> None:
    assert extract_text(b"plain words", "blob", "text/plain; charset=utf-8")[0].text == (
        "plain words"
    )
    assert extract_text(b'{"a":1}', "blob.data", "application/json")[0].text == '{\n  "a": 1\n}'


def test_html_keeps_visible_text_only() -> None:
    html = (
        b"<html><head><title>Guide</title><style>p{color:red}</style>"
        b"<script>var secret = 1;</script></head><body><h1>Heading</h1>"
        b"<p>First <b>bold</b> paragraph.</p><noscript>enable js</noscript>"
        b"<ul><li>one</li><li>two</li></ul></body></html>"
    )
    text = extract_text(html, "page.html")[0].text
    assert "Heading" in text and "First" in text and "bold" in text and "two" in text
    assert "secret" not in text and "color" not in text and "enable js" not in text


def test_json_is_pretty_printed_and_bad_json_kept_as_text() -> None:
    value = {"name": "Kestrel", "tiers": [1, 2], "ünï": "✓"}
    text = extract_text(json.dumps(value).encode(), "data.json")[0].text
    assert json.loads(text) == value and "\n" in text and "✓" in text
    lines = b'{"a": 1}\n{"a": 2}\n'
    assert extract_text(lines, "rows.json")[0].text == lines.decode().strip()
    deep = b"[" * 100_000 + b"]" * 100_000
    assert extract_text(deep, "deep.json")[0].text.startswith("[[[")


def test_csv_rows_carry_their_headers() -> None:
    data = b"sku,name,price\nZX-901,Widget,19.99\nZX-902,Gadget,5.00\n"
    text = extract_text(data, "items.csv")[0].text
    assert "sku: ZX-901; name: Widget; price: 19.99" in text
    assert text.splitlines()[0] == "sku, name, price"


@pytest.mark.parametrize(
    "name", ["main.py", "app.ts", "Main.java", "lib.rs", "x.go", "q.sql", "c.yaml", "Makefile"]
)
def test_code_files_are_text(name: str) -> None:
    source = b"def handler(event):\n    return event['id']  # KST-4013\n"
    assert "KST-4013" in extract_text(source, name)[0].text


def test_control_characters_are_removed() -> None:
    assert extract_text(b"a\x07b\x1bc \x1b[31mred\x1b[0m", "log.txt")[0].text == "abc red"


# -- PDF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_pdf_pages_keep_their_numbers(compress: bool) -> None:
    data = make_pdf(["First page text", "Second page (with parens)"], compress=compress)
    pages = extract_text(data, "report.pdf")
    assert [p.number for p in pages] == [1, 2]
    assert "First page text" in pages[0].text
    assert "Second page (with parens)" in pages[1].text


def test_pdf_blank_pages_are_skipped_and_all_blank_is_invalid() -> None:
    pages = extract_text(make_pdf(["", "Only text", ""]), "mostly-blank.pdf")
    assert [p.number for p in pages] == [2]
    with pytest.raises(InvalidFile, match="OCR"):
        extract_text(make_pdf(["", ""]), "scan.pdf")


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n" + bytes(range(256)) * 20,
        make_pdf(["truncated"])[:120],
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>",
    ],
)
def test_corrupt_pdfs_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidFile, match="PDF") as caught:
        extract_text(data, "broken.pdf")
    assert "broken.pdf" in caught.value.message


def test_a_pdf_without_header_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="not a valid PDF"):
        extract_text(b"just some text pretending", "fake.pdf")


def test_encrypted_pdf_asks_to_remove_the_password() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["secret"]))))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(InvalidFile, match="password"):
        extract_text(out.getvalue(), "locked.pdf")


def test_pdf_page_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_PAGES", 2)
    with pytest.raises(InvalidFile, match="3 pages; the limit is 2"):
        extract_text(make_pdf(["a", "b", "c"]), "long.pdf")


def test_pdf_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_PDF_SECONDS", -1.0)
    with pytest.raises(InvalidFile, match="took too long"):
        extract_text(make_pdf(["a", "b"]), "slow.pdf")


def test_text_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_CHARS", 100)
    with pytest.raises(InvalidFile, match="too much text"):
        extract_text(b"word " * 100, "big.txt")
    with pytest.raises(InvalidFile, match="too much text"):
        extract_text(make_pdf(["x" * 80, "y" * 80]), "big.pdf")


# -- DOCX -------------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order() -> None:
    data = make_docx(
        ["Travel policy", "Book flights through Navan."],
        table=[["Class", "Limit"], ["Economy", "under 6 hours"]],
    )
    (page,) = extract_text(data, "policy.docx")
    assert page.number is None
    assert page.text.index("Travel policy") < page.text.index("Navan")
    assert "Economy | under 6 hours" in page.text


def test_corrupt_docx_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="Word document"):
        extract_text(b"PK\x03\x04 not really a zip", "broken.docx")
    good = make_docx(["hello"])
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename != "word/document.xml":
                dst.writestr(item, src.read(item))
    with pytest.raises(InvalidFile, match="Word document"):
        extract_text(out.getvalue(), "missing-part.docx")


def test_docx_that_inflates_too_far_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_UNPACKED", 1000)
    with pytest.raises(InvalidFile, match="unpacks to more than"):
        extract_text(make_docx(["x" * 5000]), "bomb.docx")


def test_empty_docx_is_invalid() -> None:
    with pytest.raises(InvalidFile, match="contains no text"):
        extract_text(make_docx([""]), "blank.docx")
