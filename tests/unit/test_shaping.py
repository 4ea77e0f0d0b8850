"""Result shaping that needs no model: near-duplicate removal."""

from __future__ import annotations

from core.types import Chunk, Hit
from retrieval.search import dedupe

BASE = (
    "Employees receive twenty five days of paid annual leave per calendar year, plus public "
    "holidays; unused days carry over until the end of March of the following year. Leave is "
    "requested in the HR portal at least two weeks ahead and approved by the line manager. "
    "Part-time staff receive leave in proportion to their contracted hours, rounded up to the "
    "nearest half day. Sick leave is recorded separately and never reduces annual leave. "
    "Parents may take up to four weeks of additional unpaid leave each year until the child "
    "turns eight, after agreeing the dates with their manager."
)  # ~100 words: the size of a real chunk


def hit(text: str, n: int) -> Hit:
    chunk = Chunk(
        id=f"c{n}",
        doc_id=f"d{n}",
        source=f"/kb/{n}.md",
        title="",
        text=text,
        chunk_index=0,
        pages=(),
        heading_path=(),
        content_hash="h",
        modified_at=0.0,
        mime_type="text/markdown",
        groups=("everyone",),
    )
    return Hit(chunk, score=1.0 / (n + 1))


def test_near_duplicates_keep_the_better_ranked_copy() -> None:
    hits = [
        hit(BASE, 0),
        hit("Travel must be booked through the portal two weeks ahead of departure.", 1),
        hit(BASE.upper() + "  ", 2),  # same words, other case/spacing
        hit(BASE.replace("March", "April"), 3),  # one word changed: still near-identical
        hit(BASE[: len(BASE) // 2], 4),  # half of it: a different passage
    ]
    kept = dedupe(hits, 0.85)
    assert [h.chunk.id for h in kept] == ["c0", "c1", "c4"]
    assert [h.chunk.id for h in dedupe(hits, 1.0)] == ["c0", "c1", "c3", "c4"]


def test_short_and_empty_texts_are_compared_whole() -> None:
    hits = [hit("Yes.", 0), hit("yes", 1), hit("No.", 2), hit("", 3), hit("  ", 4)]
    assert [h.chunk.id for h in dedupe(hits, 0.85)] == ["c0", "c2", "c3"]
