"""Chunking: size bounds, overlap, boundaries, pages, and the hosted strategy's limits."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistants.retrieval import Page, chunk_pages, count_tokens, validate_static_strategy

SENTENCES = [
    f"Sentence number {i} talks about topic {i % 7} and has a few more words in it."
    for i in range(400)
]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_token_estimate_is_near_tiktoken_counts() -> None:
    # o200k_base counts of these strings, taken once from OpenAI's tokenizer.
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert 8 <= count_tokens("The quick brown fox jumps over the lazy dog.") <= 11  # 10
    assert 9 <= count_tokens("def handler(event):\n    return event['id']") <= 12  # 10
    assert count_tokens("1234567890") == 4  # digits go in threes
    assert count_tokens("経費精算の申請") == 7


def test_short_text_is_one_chunk() -> None:
    (chunk,) = chunk_pages([Page(None, "One sentence. Another one.")])
    assert chunk.index == 0 and chunk.text == "One sentence. Another one." and chunk.page is None
    assert chunk.tokens == count_tokens("One sentence.") + count_tokens("Another one.")


def test_no_text_no_chunks() -> None:
    assert chunk_pages([]) == []
    assert chunk_pages([Page(1, "  \n\n ")]) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(100, 0), (100, 50), (800, 400), (4096, 0)])
def test_chunks_respect_the_size_limit_and_cover_everything(max_tokens: int, overlap: int) -> None:
    text = " ".join(SENTENCES)
    chunks = chunk_pages([Page(None, text)], max_tokens=max_tokens, overlap=overlap)
    assert all(c.tokens <= max_tokens for c in chunks)
    assert all(count_tokens(c.text) <= max_tokens * 1.05 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    seen = set().union(*(words(c.text) for c in chunks))
    assert set(words(text)) <= seen
    if overlap == 0:
        assert sum(len(words(c.text)) for c in chunks) == len(words(text))


def test_chunks_cut_at_sentence_ends_and_overlap() -> None:
    text = " ".join(SENTENCES[:60])
    chunks = chunk_pages([Page(None, text)], max_tokens=200, overlap=100)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith("in it.")
    for before, after in itertools.pairwise(chunks):
        shared = [s for s in SENTENCES[:60] if s in before.text and s in after.text]
        assert shared, "consecutive chunks share whole sentences"
        assert sum(count_tokens(s) for s in shared) <= 100


def test_paragraph_breaks_are_preferred_cut_points() -> None:
    paragraphs = [" ".join(SENTENCES[i * 6 : i * 6 + 6]) for i in range(10)]
    chunks = chunk_pages([Page(None, "\n\n".join(paragraphs))], max_tokens=250, overlap=0)
    starts = {p.split(" and ")[0] for p in paragraphs}
    assert all(c.text.split(" and ")[0] in starts for c in chunks)
    assert "\n\n" in chunks[0].text  # paragraphs inside a chunk stay separated


def test_overlong_sentences_and_words_are_split() -> None:
    run_on = " ".join(["word"] * 3000)
    blob = "QUJD" * 25_000  # 100k characters without a space
    chunks = chunk_pages([Page(None, f"{run_on}\n\n{blob}")], max_tokens=100, overlap=20)
    assert all(c.tokens <= 100 for c in chunks)
    assert "".join(c.text for c in chunks if c.text.startswith("QUJD")).count("QUJD") >= 25_000


def test_code_keeps_lines_and_indentation() -> None:
    code = "\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(200))
    chunks = chunk_pages([Page(None, code)], max_tokens=120, overlap=0)
    assert "\n    return x + 1" in chunks[0].text
    assert all(c.tokens <= 120 for c in chunks)


def test_pages_are_tracked() -> None:
    pages = [Page(n, " ".join(SENTENCES[n * 20 : n * 20 + 20])) for n in range(1, 6)]
    chunks = chunk_pages(pages, max_tokens=150, overlap=0)
    assert chunks[0].page == 1 and chunks[-1].page == 5
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    for chunk in chunks:
        number = int(chunk.text.split()[2])  # "Sentence number N ..."
        assert chunk.page == number // 20


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_pages([Page(None, "x")], max_tokens=100, overlap=51)
    with pytest.raises(ValueError, match="positive"):
        chunk_pages([Page(None, "x")], max_tokens=0, overlap=0)


def test_a_large_document_chunks_quickly() -> None:
    import time

    text = "\n\n".join(" ".join(SENTENCES[i % 300 : i % 300 + 8]) for i in range(3000))
    started = time.perf_counter()
    chunks = chunk_pages([Page(None, text)])  # ~1.7 MB, hosted defaults
    assert time.perf_counter() - started < 20
    assert len(chunks) > 100 and all(c.tokens <= 800 for c in chunks)


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("abcdefghij .,!?\n\t-_#é漢1")), min_size=0, max_size=3000
    ),
    max_tokens=st.integers(min_value=1, max_value=300),
    ratio=st.floats(min_value=0, max_value=0.5),
)
def test_any_text_chunks_within_bounds(text: str, max_tokens: int, ratio: float) -> None:
    overlap = int(max_tokens * ratio) // 1
    overlap = min(overlap, max_tokens // 2)
    chunks = chunk_pages([Page(1, text)], max_tokens=max_tokens, overlap=overlap)
    assert all(0 < c.tokens <= max_tokens for c in chunks)
    if overlap == 0:  # the chunks, joined, give back the text (whitespace aside)
        assert "".join("".join(c.text for c in chunks).split()) == "".join(text.split())


# -- the hosted static strategy ---------------------------------------------------------------


def test_static_strategy_bounds() -> None:
    validate_static_strategy(800, 400)
    validate_static_strategy(100, 0)
    validate_static_strategy(4096, 2048)
    cases = [
        ((99, 0), "max_chunk_size_tokens': integer below minimum value. Expected a value >= 100"),
        ((4097, 0), "integer above maximum value. Expected a value <= 4096, but got 4097"),
        ((800, 401), "chunk_overlap_tokens must not exceed half of max_chunk_size_tokens (400)"),
        ((800, -1), "chunk_overlap_tokens': integer below minimum value"),
        ((True, 0), "expected an integer"),
        ((800, "10"), "chunk_overlap_tokens': expected an integer"),
    ]
    for (size, overlap), message in cases:
        with pytest.raises(ValueError) as caught:
            validate_static_strategy(size, overlap)
        assert message in str(caught.value)
        assert str(caught.value).startswith("Invalid 'chunking_strategy.static.")
