"""Every supported format, written by the project, through the real parser, chunker,
embedder and embedded Qdrant."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.container import Container
from core.types import Chunk
from ingest.pipeline import Ingestor
from tests.data.make_files import WRITERS, pdf_page_of_section, sample_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = sample_spec("leave")
FACT = "Employees accrue 25 days of annual leave"
TABLE_HEADER = "Leave type | Days per year | Paid"
HEADINGS = {".pdf", ".docx", ".pptx", ".html", ".md", ".txt", ".eml"}
TABLES = {".docx", ".pptx", ".html", ".md", ".csv", ".xlsx"}


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, embedder: object
) -> tuple[dict[str, list[Chunk]], dict[str, str]]:
    from backends.container import build_container
    from core.settings import Settings

    root = tmp_path_factory.mktemp("formats")
    kb = root / "kb"
    for ext, write in WRITERS.items():
        write(kb / f"leave{ext}", SPEC)
    container: Container = build_container(Settings(data_dir=root / "data"), embedder=embedder)  # type: ignore[arg-type]
    try:
        report = Ingestor(container).run([kb], groups=["everyone"])
        assert report.failed == []
        assert report.added == len(WRITERS)
        chunks: dict[str, list[Chunk]] = {}
        titles: dict[str, str] = {}
        for record in container.registry.all():
            ext = Path(record.document.source).suffix
            chunks[ext] = container.store.chunks(record.document.doc_id)
            titles[ext] = record.document.title
            assert record.chunks == len(chunks[ext])
    finally:
        container.close()
    return chunks, titles


@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_every_format_is_parsed_into_searchable_chunks(
    ingested: tuple[dict[str, list[Chunk]], dict[str, str]], ext: str
) -> None:
    chunks, titles = ingested
    assert chunks[ext], f"no chunks for {ext}"
    text = "\n".join(c.text for c in chunks[ext])
    if ext in {".csv", ".xlsx"}:
        assert "Annual leave | 25 | Yes" in text
    else:
        assert FACT in text
        assert titles[ext] == SPEC.title
    for c in chunks[ext]:
        assert c.text.strip()
        assert c.groups == ("everyone",)
        assert c.mime_type


@pytest.mark.parametrize("ext", sorted(HEADINGS))
def test_headings_become_the_heading_path(
    ingested: tuple[dict[str, list[Chunk]], dict[str, str]], ext: str
) -> None:
    chunks, _ = ingested
    by_fact = {c.heading_path for c in chunks[ext] if "10 working days" in c.text}
    assert by_fact
    assert all("Requesting Leave" in path for path in by_fact)
    nested = [c for c in chunks[ext] if "carried over" in c.text]
    assert nested
    assert nested[0].heading_path[-1] == "Carry-over Rules"


@pytest.mark.parametrize("ext", sorted(TABLES))
def test_tables_stay_readable_rows(
    ingested: tuple[dict[str, list[Chunk]], dict[str, str]], ext: str
) -> None:
    chunks, _ = ingested
    tables = [c.text for c in chunks[ext] if TABLE_HEADER in c.text]
    assert tables, f"no readable table in {ext}"
    assert "Volunteering leave | 2 | Yes" in tables[0]


def test_pdf_and_slides_keep_page_numbers(
    ingested: tuple[dict[str, list[Chunk]], dict[str, str]],
) -> None:
    chunks, _ = ingested
    for index, marker in [(0, FACT), (2, "10 working days")]:
        (pdf,) = [c for c in chunks[".pdf"] if marker in c.text]
        assert pdf.page == pdf_page_of_section(SPEC, index)
    slides = [c.page for c in chunks[".pptx"]]
    assert all(p is not None and p >= 2 for p in slides)  # slide 1 is the title slide
    assert slides == sorted(slides)
