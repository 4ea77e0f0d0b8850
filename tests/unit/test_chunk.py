"""Chunking logic with a word-count tokenizer (fast, no model)."""

from __future__ import annotations

from core.types import Document
from ingest.chunk import Chunker, chunk_id
from ingest.parse import Block, ParsedDocument, Section


def words(text: str) -> int:
    return len(text.split())


DOC = Document(
    doc_id="d1",
    source="/kb/handbook.docx",
    title="Handbook",
    content_hash="h1",
    modified_at=1.0,
    mime_type="text/plain",
    size_bytes=10,
    groups=("staff",),
    tags=("hr",),
)


def make(chunk_tokens: int = 40, overlap: int = 5, window: int = 64) -> Chunker:
    return Chunker(words, max_tokens=window, chunk_tokens=chunk_tokens, chunk_overlap=overlap)


def sentence(i: int) -> str:
    return f"Sentence number {i} explains one rule of the policy in plain words."


def test_chunks_stay_inside_sections_and_carry_their_heading_path() -> None:
    parsed = ParsedDocument(
        title="Handbook",
        sections=[
            Section(("Leave",), [Block(" ".join(sentence(i) for i in range(12)), 1)]),
            Section(("Leave", "Sick leave"), [Block("Report sickness before 10:00.", 2)]),
        ],
    )
    chunks = make().chunk(parsed, DOC)
    sick = [c for c in chunks if "sickness" in c.text]
    assert len(sick) == 1
    assert sick[0].heading_path == ("Leave", "Sick leave")
    assert "Sentence" not in sick[0].text  # nothing from the previous section
    assert all(c.heading_path == ("Leave",) for c in chunks if "Sentence" in c.text)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_every_chunk_with_its_header_fits_the_window() -> None:
    long_heading = tuple(f"Heading {i} with several words" for i in range(4))
    parsed = ParsedDocument(
        title="Handbook",
        sections=[Section(long_heading, [Block(" ".join(sentence(i) for i in range(40)), 1)])],
    )
    chunker = make(chunk_tokens=200, window=64)
    chunks = chunker.chunk(parsed, DOC)
    assert len(chunks) > 3
    for c in chunks:
        assert words(c.embedding_text) <= 64 - 2
        assert c.text.strip()


def test_pages_follow_the_blocks_a_chunk_spans() -> None:
    parsed = ParsedDocument(
        title="Handbook",
        sections=[Section(("Leave",), [Block(sentence(1), 3), Block(sentence(2), 4)])],
    )
    (chunk,) = make(chunk_tokens=60, window=128).chunk(parsed, DOC)
    assert chunk.pages == (3, 4)
    assert chunk.page == 3


def test_tables_split_by_rows_repeat_the_header() -> None:
    rows = ["Category | Limit | Approval"] + [
        f"Item {i} | {i * 10} EUR | manager" for i in range(30)
    ]
    parsed = ParsedDocument(
        title="Expenses", sections=[Section((), [Block("\n".join(rows), 1, is_table=True)])]
    )
    chunks = make(chunk_tokens=40, window=64).chunk(parsed, DOC)
    assert len(chunks) > 2
    for c in chunks:
        assert c.text.splitlines()[0] == "Category | Limit | Approval"
    body = [line for c in chunks for line in c.text.splitlines()[1:]]
    assert body == rows[1:]  # every row exactly once, in order


def test_whitespace_only_blocks_give_no_chunks_and_ids_are_deterministic() -> None:
    parsed = ParsedDocument(
        title="T",
        sections=[Section((), [Block("   \n\n  ", 1)]), Section(("A",), [Block("x y", 1)])],
    )
    first = make().chunk(parsed, DOC)
    second = make().chunk(parsed, DOC)
    assert [c.text for c in first] == ["x y"]
    assert [c.id for c in first] == [c.id for c in second] == [chunk_id("d1", "h1", 0)]
    assert chunk_id("d1", "h2", 0) != chunk_id("d1", "h1", 0)  # a new version gets new ids
