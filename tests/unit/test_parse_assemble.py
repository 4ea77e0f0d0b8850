"""Elements -> sections, without running unstructured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.errors import UnsupportedFormatError
from ingest.parse import _assemble, _table_text, mime_type_for


@dataclass
class Meta:
    page_number: int | None = None
    category_depth: int | None = None
    text_as_html: str | None = None
    subject: str | None = None


@dataclass
class El:
    category: str
    text: str
    metadata: Meta = field(default_factory=Meta)


def test_first_title_names_the_document_and_later_titles_build_heading_paths() -> None:
    doc = _assemble(
        [
            El("Title", "Staff Handbook", Meta(1, 0)),
            El("Title", "Leave", Meta(1, 0)),
            El("NarrativeText", "25 days a year.", Meta(1)),
            El("Title", "Sick leave", Meta(2, 1)),
            El("ListItem", "Call before 10:00.", Meta(2)),
            El("Footer", "Confidential", Meta(2)),
            El("Title", "Remote work", Meta(3, 0)),
            El("NarrativeText", "Three days a week.", Meta(3)),
        ],
        fallback_title="handbook",
    )
    assert doc.title == "Staff Handbook"
    assert [s.heading_path for s in doc.sections] == [
        ("Leave",),
        ("Leave", "Sick leave"),
        ("Remote work",),
    ]
    assert doc.sections[1].blocks[0].page == 2
    assert all("Confidential" not in b.text for s in doc.sections for b in s.blocks)


def test_email_subject_is_the_title_and_long_titles_are_text() -> None:
    long = " ".join(["word"] * 30)
    doc = _assemble(
        [El("NarrativeText", "Hello all", Meta(subject="Office closed")), El("Title", long)],
        fallback_title="mail",
    )
    assert doc.title == "Office closed"
    assert long in doc.sections[0].blocks[0].text


def test_tables_become_pipe_separated_rows() -> None:
    html = "<table><tr><th>Category</th><th>Limit</th></tr><tr><td>Meals</td><td>40 EUR</td></tr></table>"
    assert _table_text(html) == "Category | Limit\nMeals | 40 EUR"
    doc = _assemble([El("Table", "Category Limit Meals 40", Meta(1, text_as_html=html))], "x")
    assert doc.sections[0].blocks[0].is_table


def test_unsupported_extension_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"\.xyz.*\.docx"):
        mime_type_for(Path("photo.xyz"))
    assert mime_type_for(Path("A.PDF")) == "application/pdf"


def test_short_lines_labelled_as_titles_with_nothing_under_them_stay_as_text() -> None:
    # unstructured's fast PDF strategy labels the cells of a table as titles.
    cells = ["Category", "Limit", "Hotel", "150 euros per night"]
    doc = _assemble(
        [
            El("Title", "Expense Guide", Meta(1, 0)),
            El("Title", "Limits", Meta(1, 0)),
            El("Title", "Overview", Meta(1, 1)),  # a parent heading: stays a heading
            El("NarrativeText", "Limits per category.", Meta(1)),
            *[El("Title", cell, Meta(2, 0)) for cell in cells],
        ],
        "fallback",
    )
    assert [s.heading_path for s in doc.sections] == [("Limits", "Overview")]
    blocks = doc.sections[0].blocks
    assert [b.text for b in blocks] == ["Limits per category.", "\n".join(cells)]
    assert blocks[1].page == 2
    only_titles = _assemble([El("Title", t, Meta(1, 0)) for t in ["Deck", "Yes", "No"]], "x")
    assert [b.text for s in only_titles.sections for b in s.blocks] == ["Yes\nNo"]
    leading = _assemble(
        [
            El("Title", "Doc", Meta(1, 0)),
            El("Title", "Q3", Meta(1, 0)),
            El("Title", "Plan", Meta(1, 0)),
            El("NarrativeText", "Grow.", Meta(1)),
        ],
        "x",
    )
    assert [(s.heading_path, [b.text for b in s.blocks]) for s in leading.sections] == [
        (("Plan",), ["Q3", "Grow."])
    ]
