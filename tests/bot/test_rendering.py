"""bot.rendering: Markdown → mrkdwn, size-safe splitting, citations, blocks and fallback text."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openai.types.beta.threads import FileCitationAnnotation, FilePathAnnotation

from bot.rendering import (
    CONTEXT_ELEMENT_LIMIT,
    CONTEXT_MAX_ELEMENTS,
    MARKDOWN_BLOCK_LIMIT,
    MarkdownPiece,
    Source,
    _fence_end_state,
    fallback_text,
    markdown_blocks,
    render_citations,
    sources_block,
    sources_markdown,
    split_markdown,
    split_markdown_pieces,
    to_mrkdwn,
)

ZWSP = "\u200b"

# ------------------------------------------------------------------------------ to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("***both***", "*_both_*"),
        ("~~strike~~", "~strike~"),
        ("a **b** c *d* e", "a *b* c _d_ e"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("**a** and **b**", "*a* and *b*"),
    ],
)
def test_emphasis(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


@pytest.mark.parametrize(
    "markdown",
    [
        "snake_case_name and a__b__c",
        "2 * 3 * 4 = 24",
        "a ** b",
        "unclosed **bold",
        "price_in_usd_total",
    ],
)
def test_no_accidental_emphasis(markdown: str) -> None:
    assert to_mrkdwn(markdown) == markdown


def test_intraword_emphasis_gets_zero_width_space() -> None:
    # Slack formats only at word edges, which CJK text has none of.
    assert to_mrkdwn("日本語**太字**です") == f"日本語{ZWSP}*太字*{ZWSP}です"
    assert to_mrkdwn("say **hi**!") == "say *hi*!"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[text](https://example.com)", "<https://example.com|text>"),
        ('[text](https://example.com "Title")', "<https://example.com|text>"),
        ("[text](<https://example.com/a b>)", "<https://example.com/a%20b|text>"),
        ("[q](https://x.com/?a=1&b=2)", "<https://x.com/?a=1&amp;b=2|q>"),
        ("[q](https://x.com/?a=1&amp;b=2)", "<https://x.com/?a=1&amp;b=2|q>"),
        (
            "[w](https://en.wikipedia.org/wiki/Foo_(bar))",
            "<https://en.wikipedia.org/wiki/Foo_(bar)|w>",
        ),
        ("[**bold** link](https://x.y)", "<https://x.y|*bold* link>"),
        ("[a <b>](https://x.y)", "<https://x.y|a &lt;b&gt;>"),
        ("[https://x.y](https://x.y)", "<https://x.y>"),
        ("[empty]()", "empty"),
        ("<https://auto.link/path>", "<https://auto.link/path>"),
        ("<me@example.com>", "<mailto:me@example.com|me@example.com>"),
        ("see https://x.com/a_b_c_d.", "see <https://x.com/a_b_c_d>."),
        ("(https://x.com/*y*)", "(<https://x.com/*y*>)"),
        ("![a chart](https://img.example/c.png)", "<https://img.example/c.png|a chart>"),
        ("![](https://img.example/c.png)", "<https://img.example/c.png>"),
        ("[not a link] (x)", "[not a link] (x)"),
        ("footnote [1] stays", "footnote [1] stays"),
    ],
)
def test_links_and_images(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_reference_links() -> None:
    markdown = "See [the docs][d] and [D].\n\n[d]: https://docs.example/x"
    assert to_mrkdwn(markdown) == (
        "See <https://docs.example/x|the docs> and <https://docs.example/x|D>.\n"
    )


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("# Title", "*Title*"),
        ("### Third *level*", "*Third _level_*"),
        ("###### Six ##", "*Six*"),
        ("## Has **bold** inside", "*Has bold inside*"),
        ("#hashtag", "#hashtag"),
        ("Setext\n===", "*Setext*"),
        ("Setext two\n---", "*Setext two*"),
    ],
)
def test_headings_become_bold_lines(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_bullets_nesting_and_tasks() -> None:
    markdown = "- one\n  - nested *x*\n    + deeper\n* two\n+ three\n- [ ] todo\n- [x] done"
    assert to_mrkdwn(markdown) == (
        "• one\n  • nested _x_\n    • deeper\n• two\n• three\n• ☐ todo\n• ☑ done"
    )


def test_ordered_lists_kept() -> None:
    assert to_mrkdwn("1. first **b**\n2) second\n   10. nested") == (
        "1. first *b*\n2) second\n   10. nested"
    )


def test_blockquotes_kept_and_converted_inside() -> None:
    assert to_mrkdwn("> quote **b**\n> a > b\n>\n> - item") == (
        "> quote *b*\n> a &gt; b\n>\n> • item"
    )


def test_horizontal_rule() -> None:
    assert to_mrkdwn("a\n\n---\n\nb") == "a\n\n──────────\n\nb"
    assert to_mrkdwn("* * *") == "──────────"


def test_inline_code_verbatim() -> None:
    assert to_mrkdwn("use `**not bold** _x_ [a](b)` here") == ("use `**not bold** _x_ [a](b)` here")
    assert to_mrkdwn("``a ` b``") == "`a ` b`"
    assert to_mrkdwn("`a < b && c`") == "`a &lt; b &amp;&amp; c`"


def test_fenced_code_verbatim_language_dropped() -> None:
    markdown = "Intro\n\n```python\ndef f(x):\n    return x**2 < 3 and _y_  # [a](b)\n```\nafter"
    assert to_mrkdwn(markdown) == (
        "Intro\n\n```\ndef f(x):\n    return x**2 &lt; 3 and _y_  # [a](b)\n```\nafter"
    )


def test_code_fence_variants() -> None:
    assert to_mrkdwn("~~~\n**x**\n~~~") == "```\n**x**\n```"
    # A fence of four backticks may contain three.
    assert to_mrkdwn("````md\n```\ninner\n```\n````") == (f"```\n`{ZWSP}``\ninner\n`{ZWSP}``\n```")
    # Unclosed fences run to the end, as CommonMark says.
    assert to_mrkdwn("```\n# not a heading") == "```\n# not a heading\n```"
    # Fences nested in list items are dedented.
    assert to_mrkdwn("1. Run:\n    ```sh\n    ls -l | wc\n    ```\n2. Done") == (
        "1. Run:\n```\nls -l | wc\n```\n2. Done"
    )


def test_table_becomes_aligned_monospace_block() -> None:
    markdown = (
        "| Name | Qty | Price |\n"
        "|:-----|:---:|------:|\n"
        "| **Apple** | 3 | $1.00 |\n"
        "| Kiwi & co | 10 | `0.5` |\n"
    )
    assert to_mrkdwn(markdown) == (
        "```\n"
        "Name      | Qty | Price\n"
        "----------+-----+------\n"
        "Apple     |  3  | $1.00\n"
        "Kiwi &amp; co | 10  |   0.5\n"
        "```\n"
    )


def test_table_columns_align_with_wide_characters_and_ragged_rows() -> None:
    markdown = "a | b\n--|--\n日本 | x\nlong cell | y | extra\n| \\| pipe | z"
    out = to_mrkdwn(markdown).split("\n")
    assert out[0] == out[-1] == "```"
    rows = out[1:-1]
    assert rows[0].startswith("a         | b")
    assert rows[2] == "日本      | x"
    assert rows[3] == "long cell | y | extra"
    assert rows[4] == "| pipe    | z"


def test_table_needs_a_delimiter_row() -> None:
    assert to_mrkdwn("a | b\nc | d") == "a | b\nc | d"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("AT&amp;T", "AT&amp;T"),
        ("&lt;tag&gt;", "&lt;tag&gt;"),
        ("&copy; 2025 &#x27;q&#39;", "© 2025 'q'"),
        ("&nosuchentity;", "&amp;nosuchentity;"),
        ("\\*not italic\\*", "*not italic*"),
        ("\\<b\\>", "&lt;b&gt;"),
        ("<div>html</div>", "&lt;div&gt;html&lt;/div&gt;"),
        ("line<br>break", "line\nbreak"),
    ],
)
def test_entities_escaped_once(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_slack_references_kept_but_no_mass_pings() -> None:
    assert to_mrkdwn("hi <@U123ABC> in <#C0123|general>") == "hi <@U123ABC> in <#C0123|general>"
    assert to_mrkdwn("<!here> <!channel> <!everyone>") == (
        "&lt;!here&gt; &lt;!channel&gt; &lt;!everyone&gt;"
    )


def test_plain_text_and_newlines_pass_through() -> None:
    assert to_mrkdwn("") == ""
    assert to_mrkdwn("just text\nnext line\n\n\npara") == "just text\nnext line\n\n\npara"
    assert to_mrkdwn("windows\r\nline") == "windows\nline"
    assert to_mrkdwn("hard  \nbreak\\\nhere") == "hard\nbreak\nhere"


_LINK_OR_TOKEN = re.compile(r"<[^<>\n]*>")
_ENTITIES = re.compile(r"&(amp|lt|gt);")
_MARKDOWNISH = st.lists(
    st.sampled_from([*"ab *_~`#>-+|:[]()!<>&;\\\n 1.日", "https://", "```", "**", "&amp;"]),
    max_size=120,
).map("".join)


@given(st.one_of(st.text(max_size=300), _MARKDOWNISH))
@settings(max_examples=400, deadline=None)
def test_to_mrkdwn_never_raises_and_escapes_everything(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    assert isinstance(out, str)
    # Every & is an entity, every < > belongs to a link/reference or starts a quote line.
    assert "&" not in _ENTITIES.sub("", out)
    rest = _LINK_OR_TOKEN.sub("", out)
    for line in rest.split("\n"):
        assert "<" not in line
        assert ">" not in re.sub(r"^(?:> ?)+", "", line)


def test_to_mrkdwn_survives_pathological_input() -> None:
    for markdown in ["*" * 5000, "[" * 3000, "`" * 3000, "**a " * 3000, "_a" * 3000, "|\n" * 500]:
        assert isinstance(to_mrkdwn(markdown), str)


# ------------------------------------------------------------------------------ splitting


def _balanced(piece: str) -> bool:
    return _fence_end_state(piece) is None


def test_split_short_and_empty() -> None:
    assert split_markdown("") == []
    assert split_markdown("hello") == ["hello"]
    assert split_markdown("x" * 11_000) == ["x" * 11_000]
    assert len(split_markdown("x" * 11_001)) == 2


def test_split_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(20)]
    text = "\n\n".join(paragraphs)
    pieces = split_markdown(text, 500)
    assert "".join(pieces) == text
    for piece in pieces[:-1]:
        assert len(piece) <= 500
        assert piece.endswith("\n\n")
    for piece in pieces[1:]:
        assert piece.startswith("Paragraph ")


def test_split_falls_back_to_lines_then_words_then_hard() -> None:
    lines = "\n".join(f"line {i} " + "x" * 40 for i in range(50))
    pieces = split_markdown(lines, 300)
    assert all(len(p) <= 300 for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-1])
    words = " ".join(["word"] * 500)
    pieces = split_markdown(words, 100)
    assert "".join(pieces) == words
    assert all(p.endswith(" ") for p in pieces[:-1])
    solid = "y" * 250
    assert split_markdown(solid, 100) == ["y" * 100, "y" * 100, "y" * 50]


def test_split_closes_and_reopens_code_blocks() -> None:
    code = "\n".join(f"print({i})  # some code here" for i in range(100))
    text = f"Intro paragraph.\n\n```python\n{code}\n```\n\nOutro."
    pieces = split_markdown_pieces(text, 400)
    assert "".join(p.body for p in pieces) == text
    assert len(pieces) > 3
    for piece in pieces:
        assert len(piece.text) <= 400
        assert _balanced(piece.text)
    inside = [p for p in pieces if p.prefix]
    assert inside
    for piece in inside:
        assert piece.prefix == "```python\n"
    for piece in pieces:
        if piece.suffix:
            assert piece.suffix in ("```", "\n```")
            assert piece.text.endswith("```")
    assert split_markdown(text, 400) == [p.text for p in pieces]


def test_split_reopens_tilde_and_long_fences() -> None:
    text = "~~~~ js\n" + "let a = 1;\n" * 60 + "~~~~\n"
    pieces = split_markdown_pieces(text, 200)
    assert "".join(p.body for p in pieces) == text
    for piece in pieces[1:]:
        assert piece.prefix == "~~~~ js\n"
    for piece in pieces[:-1]:
        assert piece.suffix.endswith("~~~~")
        assert _balanced(piece.text)


def test_split_keeps_an_unclosed_final_block_as_written() -> None:
    text = "```\n" + "code line\n" * 50
    pieces = split_markdown_pieces(text, 120)
    assert "".join(p.body for p in pieces) == text
    assert pieces[-1].suffix == ""
    assert all(_balanced(p.text) for p in pieces[:-1])


def test_split_never_splits_table_rows() -> None:
    rows = "\n".join(f"| row {i} | {'v' * 20} | {i * 7} |" for i in range(60))
    text = f"Table:\n\n| a | b | c |\n|---|---|---|\n{rows}\n\nAfter the table."
    pieces = split_markdown(text, 333)
    assert "".join(pieces) == text
    for piece in pieces:
        assert len(piece) <= 333
        for line in piece.split("\n"):
            assert not line or line.startswith(("|", "Table:", "After")), line
            if line.startswith("|"):
                assert line.endswith("|"), line


def test_split_never_tears_surrogate_pairs_or_combining_marks() -> None:
    pair = "\ud83d\ude00"  # a surrogate pair as some JSON decoders leave it
    text = pair * 200
    pieces = split_markdown(text, 101)
    assert "".join(pieces) == text
    for piece in pieces:
        assert not ("\ud800" <= piece[-1] <= "\udbff")
        assert not ("\udc00" <= piece[0] <= "\udfff")
    accented = "e\u0301" * 100
    for piece in split_markdown(accented, 51):
        assert piece[0] == "e"
    family = "👨\u200d👩\u200d👧" * 40
    for piece in split_markdown(family, 50):
        assert piece[0] == "👨" and piece[-1] == "👧"


def test_split_rejects_nonpositive_limit() -> None:
    with pytest.raises(ValueError):
        split_markdown("abc", 0)


_SPLIT_TEXT = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from(list("ab c|-:\t日😀é\u0301")), max_size=60),
        st.sampled_from(
            [
                "",
                "```",
                "```python",
                "~~~",
                "  ```",
                "| a | b |",
                "|---|---|",
                "| 1 | 2 |",
                "- item",
                "> quote",
                "\ud83d\ude00\ud83d\ude00",
            ]
        ),
    ),
    max_size=60,
).map("\n".join)


@given(_SPLIT_TEXT, st.integers(min_value=40, max_value=400))
@settings(max_examples=400, deadline=None)
def test_split_invariants(text: str, limit: int) -> None:
    pieces = split_markdown_pieces(text, limit)
    assert "".join(p.body for p in pieces) == text
    assert split_markdown(text, limit) == [p.text for p in pieces]
    doc_open = _fence_end_state(text) is not None
    for index, piece in enumerate(pieces):
        assert isinstance(piece, MarkdownPiece)
        assert 0 < len(piece.text) <= limit
        assert piece.body
        last = index == len(pieces) - 1
        assert _balanced(piece.text) or (last and doc_open)
        if index:
            cut = piece.body[0]
            previous = pieces[index - 1].body[-1]
            assert not ("\ud800" <= previous <= "\udbff" and "\udc00" <= cut <= "\udfff")
            assert not (cut == "\u0301")


@given(st.text(max_size=500), st.integers(min_value=1, max_value=120))
@settings(max_examples=300, deadline=None)
def test_split_any_text_reassembles(text: str, limit: int) -> None:
    pieces = split_markdown_pieces(text, limit)
    assert "".join(p.body for p in pieces) == text
    assert all(len(p.text) <= limit for p in pieces)


@given(
    st.lists(st.text(alphabet="abc xyz", min_size=1, max_size=25), min_size=1, max_size=40),
    st.integers(min_value=100, max_value=300),
)
@settings(max_examples=200, deadline=None)
def test_split_table_rows_whole(cells: list[str], limit: int) -> None:
    rows = [f"| {c} | {c[::-1]} |" for c in cells]
    text = "| h1 | h2 |\n|----|----|\n" + "\n".join(rows)
    assume(max(len(r) for r in rows) < limit // 3)
    bodies = [p.body for p in split_markdown_pieces(text, limit)]
    assert "".join(bodies) == text
    for body in bodies[:-1]:
        assert body.endswith("\n")


# ------------------------------------------------------------------------------ citations


def _citation(text: str, marker: str, file_id: str, occurrence: int = 0) -> dict[str, object]:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(marker, start + 1)
    return {
        "type": "file_citation",
        "text": marker,
        "start_index": start,
        "end_index": start + len(marker),
        "file_citation": {"file_id": file_id},
    }


def test_hosted_example_marker() -> None:
    marker = "【4:0†source】"
    assert len(marker) == 12
    text = "x" * 348 + marker + "."
    annotations = [
        {
            "type": "file_citation",
            "text": marker,
            "start_index": 348,
            "end_index": 360,
            "file_citation": {"file_id": "file-abc"},
        }
    ]
    rendered, sources = render_citations(text, annotations, {"file-abc": "report.pdf"})
    assert rendered == "x" * 348 + "[1]."
    assert sources == [Source(number=1, file_id="file-abc", filename="report.pdf")]


def test_chained_markers_same_and_different_files() -> None:
    text = "Fact one.【4:1†source】【4:6†source】 Fact two.【5:0†a.pdf】【5:1†b.pdf】"
    annotations = [
        _citation(text, "【4:1†source】", "file-a"),
        _citation(text, "【4:6†source】", "file-a"),
        _citation(text, "【5:0†a.pdf】", "file-a"),
        _citation(text, "【5:1†b.pdf】", "file-b"),
    ]
    rendered, sources = render_citations(text, annotations, {"file-a": "a.pdf"})
    assert rendered == "Fact one.[1] Fact two.[1][2]"
    assert [(s.number, s.file_id, s.filename) for s in sources] == [
        (1, "file-a", "a.pdf"),
        (2, "file-b", "b.pdf"),
    ]


def test_same_file_twice_keeps_its_number_and_order_is_by_appearance() -> None:
    text = "A【1:0†source】 B【1:1†source】 C【1:2†source】."
    annotations = [
        _citation(text, "【1:2†source】", "file-a"),
        _citation(text, "【1:1†source】", "file-b"),
        _citation(text, "【1:0†source】", "file-a"),
    ]  # deliberately out of order
    rendered, sources = render_citations(text, annotations, {"file-a": "a.md", "file-b": "b.md"})
    assert rendered == "A[1] B[2] C[1]."
    assert [s.file_id for s in sources] == ["file-a", "file-b"]


def test_adjacent_duplicates_collapse_across_spaces() -> None:
    text = "Claim 【1:0†x.pdf】 【1:1†x.pdf】 end"
    annotations = [
        _citation(text, "【1:0†x.pdf】", "f"),
        _citation(text, "【1:1†x.pdf】", "f"),
    ]
    assert render_citations(text, annotations, {})[0] == "Claim [1] end"


def test_unknown_and_half_markers_removed() -> None:
    text = "Known【4:0†source】, made up 【7:3†ghost.pdf】 here. Old style【13†source】. Cut【4:"
    annotations = [_citation(text, "【4:0†source】", "file-a")]
    rendered, sources = render_citations(text, annotations, {"file-a": "a.pdf"})
    assert rendered == "Known[1], made up here. Old style. Cut"
    assert len(sources) == 1
    for tail in ["【", "【4", "【4:0", "【4:0†", "【4:0†sou"]:
        assert render_citations(f"End{tail}", [], {})[0] == "End"


def test_cjk_brackets_that_are_not_markers_survive() -> None:
    assert render_citations("【重要】お知らせ", [], {})[0] == "【重要】お知らせ"


def test_wrong_indices_fall_back_to_the_marker_text() -> None:
    text = "Héllo 😀 world【4:0†source】."
    annotations = [
        {
            "type": "file_citation",
            "text": "【4:0†source】",
            "start_index": 15,  # counted in UTF-16 units by some other engine
            "end_index": 27,
            "file_citation": {"file_id": "file-a"},
        }
    ]
    assert render_citations(text, annotations, {})[0] == "Héllo 😀 world[1]."


def test_filenames_quotes_and_fallbacks() -> None:
    text = "a【1:0†source】 b【1:1†notes.txt】 c【1:2†source】"
    annotations = [
        _citation(text, "【1:0†source】", "file-1"),
        _citation(text, "【1:1†notes.txt】", "file-2"),
        {
            **_citation(text, "【1:2†source】", "file-3"),
            "file_citation": {"file_id": "file-3", "quote": "v1 quote"},
        },
    ]
    rendered, sources = render_citations(
        text, annotations, {"file-1": "one.pdf"}, {"【1:1†notes.txt】": "marker quote"}
    )
    assert rendered == "a[1] b[2] c[3]"
    assert [(s.filename, s.quote) for s in sources] == [
        ("one.pdf", None),
        ("notes.txt", "marker quote"),
        ("file-3", "v1 quote"),
    ]
    _, sources = render_citations(text, annotations, {}, {"file-1": "per file"})
    assert sources[0].quote == "per file"


def test_sdk_annotation_objects_accepted() -> None:
    text = "Fact【4:0†source】"
    annotation = FileCitationAnnotation(
        type="file_citation",
        text="【4:0†source】",
        start_index=4,
        end_index=16,
        file_citation={"file_id": "file-a"},  # type: ignore[arg-type]
    )
    rendered, sources = render_citations(text, [annotation], {"file-a": "a.pdf"})  # type: ignore[list-item]
    assert rendered == "Fact[1]"
    assert sources[0].filename == "a.pdf"


def _file_path(text: str, path: str, file_id: str) -> dict[str, object]:
    start = text.index(path)
    return {
        "type": "file_path",
        "text": path,
        "start_index": start,
        "end_index": start + len(path),
        "file_path": {"file_id": file_id},
    }


def test_file_path_links() -> None:
    text = "Saved to sandbox:/mnt/data/x.csv and sandbox:/mnt/data/y.png."
    annotations = [
        _file_path(text, "sandbox:/mnt/data/x.csv", "file-x"),
        _file_path(text, "sandbox:/mnt/data/y.png", "file-y"),
    ]
    rendered, sources = render_citations(
        text, annotations, {}, links={"file-x": "https://team.slack.com/files/U1/F1/x.csv"}
    )
    assert rendered == "Saved to [x.csv](https://team.slack.com/files/U1/F1/x.csv) and y.png."
    assert sources == []


def test_file_path_inside_a_markdown_link() -> None:
    text = "[Download the CSV](sandbox:/mnt/data/x.csv) or ![chart](sandbox:/mnt/data/c.png)"
    annotations = [
        _file_path(text, "sandbox:/mnt/data/x.csv", "file-x"),
        _file_path(text, "sandbox:/mnt/data/c.png", "file-c"),
    ]
    links = {"file-x": "https://perma/x", "file-c": "https://perma/c"}
    assert render_citations(text, annotations, {}, links=links)[0] == (
        "[Download the CSV](https://perma/x) or [chart](https://perma/c)"
    )
    assert render_citations(text, annotations, {"file-c": "chart.png"})[0] == (
        "Download the CSV (x.csv) or chart (chart.png)"
    )
    obj = FilePathAnnotation.model_validate(annotations[0])
    assert render_citations(text, [obj], {}, links=links)[0].startswith(  # type: ignore[list-item]
        "[Download the CSV](https://perma/x)"
    )


def test_unannotated_sandbox_links_become_their_label() -> None:
    assert render_citations("See [the file](sandbox:/mnt/data/gone.txt).", [], {})[0] == (
        "See the file."
    )


_MARKER_PARTS = st.sampled_from(
    ["word ", "【4:0†source】", "【1†a.pdf】", "【12:3†notes 2.txt】", ". ", "\n", " ", "【4:"]
)
_TAILS = st.sampled_from(["", "【", "【4", "【4:", "【4:0†sou", " 【4:0†"])


def _annotate(text: str, data: st.DataObject) -> list[dict[str, object]]:
    markers = [m for m in re.finditer(r"【[^【】\n]*】", text) if "†" in m.group()]
    chosen = [m for m in markers if data.draw(st.booleans())]
    annotations: list[dict[str, object]] = [
        {
            "type": "file_citation",
            "text": m.group(),
            "start_index": m.start(),
            "end_index": m.end(),
            "file_citation": {"file_id": f"file-{len(m.group()) % 3}"},
        }
        for m in chosen
    ]
    return data.draw(st.permutations(annotations))


@given(st.lists(_MARKER_PARTS, max_size=30), _TAILS, st.data())
@settings(max_examples=200, deadline=None)
def test_no_marker_ever_survives(parts: list[str], tail: str, data: st.DataObject) -> None:
    text = "".join(parts) + tail
    rendered, sources = render_citations(text, _annotate(text, data), {})
    assert "【" not in rendered
    assert "†" not in rendered
    assert [s.number for s in sources] == list(range(1, len(sources) + 1))
    assert not re.search(r"\[(\d+)\]\s*\[\1\]", rendered)


@given(
    st.lists(
        st.one_of(
            _MARKER_PARTS,
            st.sampled_from(["【", "】", "†", "【重要】"]),
            st.text(alphabet="ab :0123456789†", max_size=8).map(lambda s: f"【{s}】"),
        ),
        max_size=30,
    ),
    st.data(),
)
@settings(max_examples=200, deadline=None)
def test_no_complete_or_partial_marker_survives(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    rendered, _ = render_citations(text, _annotate(text, data), {})
    assert not re.search(r"【[^【】\n]*†[^【】\n]*】", rendered)
    assert not re.search(r"【(?:\d+(?::\d*)?)?(?:†[^【】\n]*)?$", rendered)


# ----------------------------------------------------------------------- sources rendering


def test_sources_block_shape_and_escaping() -> None:
    sources = [
        Source(1, "file-a", "Q&A <draft>.pdf", quote="  The   <quick> brown  fox.  ", page=3),
        Source(2, "file-b", "b.txt"),
    ]
    block = sources_block(sources)
    assert block["type"] == "context"
    assert block["elements"] == [
        {
            "type": "mrkdwn",
            "text": '[1] Q&amp;A &lt;draft&gt;.pdf (p. 3) — "The &lt;quick&gt; brown fox."',
        },
        {"type": "mrkdwn", "text": "[2] b.txt"},
    ]


def test_sources_block_trims_quotes_and_respects_limits() -> None:
    long_quote = "lorem ipsum dolor " * 40
    block = sources_block([Source(1, "f", "a.pdf", quote=long_quote)])
    text = block["elements"][0]["text"]
    quoted = text.split(" — ", 1)[1]
    assert quoted.endswith('…"')
    assert len(quoted) <= 150 + 3
    many = [Source(i, f"f{i}", f"file-{i}.pdf" + "x" * 400, quote=long_quote) for i in range(1, 26)]
    block = sources_block(many)
    assert len(block["elements"]) <= CONTEXT_MAX_ELEMENTS
    assert all(len(e["text"]) <= CONTEXT_ELEMENT_LIMIT for e in block["elements"])
    assert "[25]" in block["elements"][-1]["text"] or block["elements"][-1]["text"].endswith("…")
    with pytest.raises(ValueError):
        sources_block([])


def test_sources_markdown() -> None:
    assert sources_markdown([]) == ""
    out = sources_markdown(
        [Source(1, "f", "my_*draft*.pdf", quote="Some quote", page=2), Source(2, "g", "b.txt")]
    )
    assert out == (
        '\n\n**Sources**\n- [1] my\\_\\*draft\\*.pdf (p. 2) — "Some quote"\n- [2] b.txt\n'
    )


# --------------------------------------------------------------------- blocks and fallback


def test_markdown_blocks() -> None:
    assert markdown_blocks("") == []
    assert markdown_blocks("  \n ") == []
    assert markdown_blocks("**hi**") == [{"type": "markdown", "text": "**hi**"}]
    long = "\n\n".join(["para " * 500] * 20)
    blocks = markdown_blocks(long)
    assert len(blocks) > 1
    assert all(b["type"] == "markdown" for b in blocks)
    assert all(len(b["text"]) <= MARKDOWN_BLOCK_LIMIT for b in blocks)
    assert "".join(b["text"] for b in blocks) == long


def test_fallback_text_short_is_mrkdwn() -> None:
    assert (
        fallback_text("**Hi** [there](https://x.y) & bye") == "*Hi* <https://x.y|there> &amp; bye"
    )


def test_fallback_text_truncates_safely() -> None:
    text = "word " * 2000
    out = fallback_text(text)
    assert len(out) <= 3000
    assert out.endswith("…")
    link = "see " * 700 + "[a link](https://example.com/" + "p" * 100 + ")"
    out = fallback_text(link, 2850)
    assert len(out) <= 2850
    assert out.count("<") == out.count(">")
    amp = "a&b " * 1000
    out = fallback_text(amp, 100)
    assert len(out) <= 100
    assert out.startswith("a&amp;b a&amp;b")
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", out)  # no entity cut in half


def test_fallback_text_closes_an_open_code_block() -> None:
    text = "Intro\n\n```\n" + "code line\n" * 500 + "```"
    out = fallback_text(text, 500)
    assert len(out) <= 500
    assert out.endswith("…\n```")
    assert out.count("```") % 2 == 0


@given(st.one_of(st.text(max_size=600), _MARKDOWNISH), st.integers(min_value=1, max_value=300))
@settings(max_examples=300, deadline=None)
def test_fallback_text_within_limit(markdown: str, limit: int) -> None:
    out = fallback_text(markdown, limit)
    assert len(out) <= limit
    if len(to_mrkdwn(markdown)) > limit:
        assert "…" in out


def test_markdown_blocks_keep_code_blocks_balanced() -> None:
    text = "Intro\n\n```sql\n" + "SELECT * FROM t WHERE a < 1;\n" * 1000 + "```\n\nDone."
    blocks = markdown_blocks(text)
    assert len(blocks) > 1
    for block in blocks:
        assert len(block["text"]) <= MARKDOWN_BLOCK_LIMIT
        assert _fence_end_state(block["text"]) is None
    assert blocks[1]["text"].startswith("```sql\n")


def test_marker_pieces_joined_by_a_replaced_marker_are_removed_too() -> None:
    text = "【word 【4:0†source】†】"
    annotation = {
        "type": "file_citation",
        "text": "【4:0†source】",
        "start_index": 6,
        "end_index": 18,
        "file_citation": {"file_id": "file-0"},
    }
    rendered, sources = render_citations(text, [annotation], {"file-0": "a.pdf"})
    assert "【" not in rendered and "†" not in rendered
    assert [s.filename for s in sources] == ["a.pdf"]
