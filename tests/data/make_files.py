"""Writers that produce small, real documents of every supported format.

Everything is generated at test time from one content spec (:class:`DocSpec`),
so no binary fixtures need to be committed. All writers return the path they
wrote and create missing parent directories.

Determinism: writing the same spec twice gives byte-identical files for every
format. Where the underlying library embeds timestamps (PDF creation date, OOXML
core properties, ZIP member dates) they are pinned to :data:`FIXED_DATE`.

Typical use::

    from tests.data.make_files import WRITERS, sample_spec

    spec = sample_spec("leave")
    paths = [write(tmp_path / f"leave{ext}", spec) for ext, write in WRITERS.items()]
    bad = [make(tmp_path / name) for name, make in BAD_FILES.items()]
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import random
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

__all__ = [
    "BAD_FILES",
    "FIXED_DATE",
    "SAMPLE_TOPICS",
    "WRITERS",
    "DocSpec",
    "Section",
    "Writer",
    "pdf_page_of_section",
    "sample_spec",
    "write_big_file",
    "write_csv",
    "write_docx",
    "write_eml",
    "write_html",
    "write_md",
    "write_pdf",
    "write_pptx",
    "write_txt",
    "write_xlsx",
]

#: Timestamp used wherever a format stores a creation/modification date (UTC).
FIXED_DATE = dt.datetime(2024, 1, 15, 9, 30, 0, tzinfo=dt.UTC)
_FIXED_DATE_NAIVE = FIXED_DATE.replace(tzinfo=None)
_ZIP_DATE = (2024, 1, 15, 9, 30, 0)
_AUTHOR = "Enclave test suite"


@dataclass(frozen=True)
class Section:
    """A heading followed by paragraphs. ``level`` 1 = top-level, 2 = sub-heading."""

    heading: str
    paragraphs: tuple[str, ...]
    level: int = 1


@dataclass(frozen=True)
class DocSpec:
    """Format-independent document content.

    ``table``: first row is the header; rendered wherever the format supports it.
    """

    title: str
    sections: tuple[Section, ...]
    table: tuple[tuple[str, ...], ...] = ()


Writer = Callable[[str | Path, DocSpec], Path]


def _prepare(path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _check_level(section: Section) -> int:
    if section.level not in (1, 2):
        raise ValueError(f"Section.level must be 1 or 2, got {section.level!r}")
    return section.level


# --------------------------------------------------------------------------- OOXML helpers

_CORE_DATE_RE = re.compile(
    rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:(?:created|modified)>)"
)


def _normalize_ooxml_zip(path: Path) -> None:
    """Rewrite an OOXML zip so its bytes do not depend on the wall clock.

    python-docx, python-pptx and openpyxl write ZIP members with the current
    local time, and openpyxl always stamps ``dcterms:modified`` with *now*.
    Member order and content are kept; member dates and core-property dates are
    pinned to :data:`FIXED_DATE`.
    """
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(path) as zin:
        members = [(info.filename, zin.read(info)) for info in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members:
            if name == "docProps/core.xml":
                data = _CORE_DATE_RE.sub(lambda m: m.group(1) + stamp + m.group(3), data)
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            zout.writestr(info, data)
    path.write_bytes(buf.getvalue())


# --------------------------------------------------------------------------- PDF


def _pdf_bytes(spec: DocSpec) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.platypus import (
        Flowable,
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    base = getSampleStyleSheet()
    title_style = ParagraphStyle(
        "EnclaveTitle", parent=base["Title"], fontName="Helvetica-Bold", fontSize=24, leading=30
    )
    h1 = ParagraphStyle(
        "EnclaveH1", parent=base["Heading1"], fontName="Helvetica-Bold", fontSize=16, leading=20
    )
    h2 = ParagraphStyle(
        "EnclaveH2", parent=base["Heading2"], fontName="Helvetica-Bold", fontSize=13, leading=16
    )
    body = ParagraphStyle(
        "EnclaveBody", parent=base["BodyText"], fontName="Helvetica", fontSize=11, leading=14
    )

    story: list[Flowable] = [Paragraph(html.escape(spec.title), title_style), Spacer(1, 12)]
    seen_top_level = False
    for section in spec.sections:
        level = _check_level(section)
        if level == 1:
            if seen_top_level:
                story.append(PageBreak())
            seen_top_level = True
        story.append(Paragraph(html.escape(section.heading), h1 if level == 1 else h2))
        story.extend(Paragraph(html.escape(p), body) for p in section.paragraphs)
    if spec.table:
        if spec.sections:
            story.append(PageBreak())
        table = Table([list(row) for row in spec.table], hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                    ("FONTNAME", (0, 1), (-1, -1), "Helvetica"),
                    ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(table)

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        title=spec.title,
        author=_AUTHOR,
        creator=_AUTHOR,
        invariant=1,
    )
    doc.build(story)
    return buf.getvalue()


def write_pdf(path: str | Path, spec: DocSpec) -> Path:
    """Write a text PDF with reportlab (A4, Helvetica).

    Page layout, with ``n`` = number of *top-level* (level 1) sections:

    * page 1: the title (24 pt bold) followed by the first top-level section;
    * top-level section ``i`` (0-based, counting only level-1 sections) starts
      on page ``i + 1``, i.e. every top-level section after the first begins
      with a page break;
    * level-2 sections continue on the page of the preceding top-level section
      (the sample specs are short enough that nothing overflows a page);
    * the table, if any, is alone on the last page, page ``n + 1``
      (page 1 if the spec has no sections).

    Headings are bold (16 pt level 1, 13 pt level 2). ``invariant=1`` pins the
    creation date and document ID, so the output is byte-identical across runs.
    """
    p = _prepare(path)
    p.write_bytes(_pdf_bytes(spec))
    return p


def pdf_page_of_section(spec: DocSpec, index: int) -> int:
    """1-based PDF page on which ``spec.sections[index]`` starts (see :func:`write_pdf`)."""
    page = 1
    seen_top_level = False
    for i, section in enumerate(spec.sections):
        if _check_level(section) == 1:
            if seen_top_level:
                page += 1
            seen_top_level = True
        if i == index:
            return page
    raise IndexError(index)


# --------------------------------------------------------------------------- DOCX


def _set_core_properties(props: Any, title: str) -> None:
    """Fixed metadata for DOCX/PPTX, so the same spec gives the same bytes."""
    props.title = title
    props.author = _AUTHOR
    props.last_modified_by = _AUTHOR
    props.created = _FIXED_DATE_NAIVE
    props.modified = _FIXED_DATE_NAIVE
    props.last_printed = _FIXED_DATE_NAIVE
    props.revision = 1


def write_docx(path: str | Path, spec: DocSpec) -> Path:
    """Write a Word document: title as heading 0 ("Title" style), headings with
    ``add_heading(level)``, paragraphs, and the table (style "Table Grid") last.

    Core properties (title, author, created/modified) are fixed.
    """
    from docx import Document

    p = _prepare(path)
    doc = Document()
    doc.add_heading(spec.title, 0)
    for section in spec.sections:
        doc.add_heading(section.heading, _check_level(section))
        for para in section.paragraphs:
            doc.add_paragraph(para)
    if spec.table:
        ncols = max(len(row) for row in spec.table)
        table = doc.add_table(rows=len(spec.table), cols=ncols)
        table.style = "Table Grid"
        for r, row in enumerate(spec.table):
            for c, value in enumerate(row):
                table.cell(r, c).text = value
    _set_core_properties(doc.core_properties, spec.title)
    doc.save(str(p))
    _normalize_ooxml_zip(p)
    return p


# --------------------------------------------------------------------------- PPTX


def write_pptx(path: str | Path, spec: DocSpec) -> Path:
    """Write a PowerPoint deck.

    Slide 1 is a title slide (title only; the subtitle placeholder is removed).
    Slide ``i + 2`` holds ``spec.sections[i]`` (any level): slide title = heading,
    body placeholder = one paragraph per entry of ``paragraphs``. If the spec has a
    table it is alone on the last slide (blank layout, no title).
    """
    from pptx import Presentation
    from pptx.util import Inches

    p = _prepare(path)
    prs = Presentation()
    title_layout, content_layout, blank_layout = (
        prs.slide_layouts[0],
        prs.slide_layouts[1],
        prs.slide_layouts[6],
    )

    slide = prs.slides.add_slide(title_layout)
    title_shape = slide.shapes.title
    assert title_shape is not None
    title_shape.text = spec.title
    for ph in list(slide.placeholders):
        if ph.placeholder_format.idx != 0:
            ph.element.getparent().remove(ph.element)

    for section in spec.sections:
        _check_level(section)
        slide = prs.slides.add_slide(content_layout)
        heading_shape = slide.shapes.title
        assert heading_shape is not None
        heading_shape.text = section.heading
        body = slide.placeholders[1].text_frame
        for i, para in enumerate(section.paragraphs):
            tp = body.paragraphs[0] if i == 0 else body.add_paragraph()
            tp.text = para

    if spec.table:
        slide = prs.slides.add_slide(blank_layout)
        rows, cols = len(spec.table), max(len(row) for row in spec.table)
        frame = slide.shapes.add_table(
            rows, cols, Inches(0.5), Inches(1.0), Inches(9.0), Inches(0.4 * rows)
        )
        for r, row in enumerate(spec.table):
            for c, value in enumerate(row):
                frame.table.cell(r, c).text = value

    _set_core_properties(prs.core_properties, spec.title)
    prs.save(str(p))
    _normalize_ooxml_zip(p)
    return p


# --------------------------------------------------------------------------- HTML / MD / TXT


def write_html(path: str | Path, spec: DocSpec) -> Path:
    """Write a standalone HTML5 page: ``<title>``, ``<h1>`` title, ``<h2>``/``<h3>``
    headings for level 1/2 sections, ``<p>`` paragraphs, and a ``<table>`` with a
    ``<thead>`` header row after the sections."""
    esc = html.escape
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(spec.title)}</title>",
        "</head>",
        "<body>",
        f"<h1>{esc(spec.title)}</h1>",
    ]
    for section in spec.sections:
        tag = "h2" if _check_level(section) == 1 else "h3"
        lines.append(f"<{tag}>{esc(section.heading)}</{tag}>")
        lines.extend(f"<p>{esc(para)}</p>" for para in section.paragraphs)
    if spec.table:
        header, *rows = spec.table
        lines.append("<table>")
        lines.append(
            "<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in header) + "</tr></thead>"
        )
        lines.append("<tbody>")
        lines.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        lines.append("</tbody>")
        lines.append("</table>")
    lines += ["</body>", "</html>", ""]
    p = _prepare(path)
    p.write_text("\n".join(lines), encoding="utf-8")
    return p


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|")


def write_md(path: str | Path, spec: DocSpec) -> Path:
    """Write Markdown: ``# title``, ``##``/``###`` headings, paragraphs separated by
    blank lines, and a GitHub-style pipe table after the sections."""
    lines = [f"# {spec.title}", ""]
    for section in spec.sections:
        marks = "##" if _check_level(section) == 1 else "###"
        lines += [f"{marks} {section.heading}", ""]
        for para in section.paragraphs:
            lines += [para, ""]
    if spec.table:
        header, *rows = spec.table
        lines.append("| " + " | ".join(_md_cell(c) for c in header) + " |")
        lines.append("|" + "|".join(" --- " for _ in header) + "|")
        lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
        lines.append("")
    p = _prepare(path)
    p.write_text("\n".join(lines), encoding="utf-8")
    return p


def _text_table(table: tuple[tuple[str, ...], ...]) -> list[str]:
    ncols = max(len(row) for row in table)
    padded = [tuple(row) + ("",) * (ncols - len(row)) for row in table]
    widths = [max(len(row[c]) for row in padded) for c in range(ncols)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in padded
    ]


def _plain_text(spec: DocSpec, include_title: bool = True) -> str:
    lines: list[str] = []
    if include_title:
        lines += [spec.title, ""]
    for section in spec.sections:
        _check_level(section)
        lines += [section.heading, ""]
        for para in section.paragraphs:
            lines += [para, ""]
    if spec.table:
        lines += [*_text_table(spec.table), ""]
    return "\n".join(lines)


def write_txt(path: str | Path, spec: DocSpec) -> Path:
    """Write UTF-8 plain text: the title, then each heading and paragraph on its own
    line separated by blank lines (no Markdown or underline markup, so heading levels
    are not represented), then the table as space-aligned columns."""
    p = _prepare(path)
    p.write_text(_plain_text(spec), encoding="utf-8")
    return p


# --------------------------------------------------------------------------- EML


def write_eml(path: str | Path, spec: DocSpec) -> Path:
    """Write an RFC 5322 message: ``Subject`` = title, fixed From/To/Date/Message-ID,
    single ``text/plain; charset=utf-8`` (8bit) body with the sections (and the table as
    aligned text). The title is not repeated in the body."""
    msg = EmailMessage()
    msg["From"] = "Northwind Labs HR <hr@northwind.example>"
    msg["To"] = "All Staff <staff@northwind.example>"
    msg["Subject"] = spec.title
    msg["Date"] = format_datetime(FIXED_DATE)
    msg["Message-ID"] = "<enclave-test-0001@northwind.example>"
    msg.set_content(_plain_text(spec, include_title=False), charset="utf-8", cte="8bit")
    p = _prepare(path)
    p.write_bytes(bytes(msg))
    return p


# --------------------------------------------------------------------------- CSV / XLSX


def _require_table(spec: DocSpec, fmt: str) -> tuple[tuple[str, ...], ...]:
    if not spec.table:
        raise ValueError(f"{fmt} output needs a table; DocSpec.table is empty")
    return spec.table


def write_csv(path: str | Path, spec: DocSpec) -> Path:
    """Write ``spec.table`` (header row first) as UTF-8 CSV with ``\\n`` line endings.
    Raises ``ValueError`` if the spec has no table."""
    table = _require_table(spec, "CSV")
    p = _prepare(path)
    with p.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(table)
    return p


_SHEET_BAD_CHARS = re.compile(r"[\[\]:*?/\\]")


def _sheet_name(title: str) -> str:
    name = _SHEET_BAD_CHARS.sub(" ", title).strip().strip("'")[:31].strip()
    return name or "Sheet1"


def write_xlsx(path: str | Path, spec: DocSpec) -> Path:
    """Write ``spec.table`` to a single worksheet named after the title (characters
    illegal in sheet names replaced, truncated to 31 chars), header row bold.
    Raises ``ValueError`` if the spec has no table."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    table = _require_table(spec, "XLSX")
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = _sheet_name(spec.title)
    for row in table:
        ws.append(list(row))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    wb.properties.title = spec.title
    wb.properties.creator = _AUTHOR
    wb.properties.lastModifiedBy = _AUTHOR
    wb.properties.created = _FIXED_DATE_NAIVE
    p = _prepare(path)
    wb.save(str(p))
    _normalize_ooxml_zip(p)  # openpyxl always stamps dcterms:modified with "now"
    return p


WRITERS: dict[str, Writer] = {
    ".pdf": write_pdf,
    ".docx": write_docx,
    ".pptx": write_pptx,
    ".html": write_html,
    ".md": write_md,
    ".txt": write_txt,
    ".eml": write_eml,
    ".csv": write_csv,
    ".xlsx": write_xlsx,
}


# --------------------------------------------------------------------------- sample content

_SAMPLES: dict[str, DocSpec] = {
    "leave": DocSpec(
        title="Annual Leave Policy",
        sections=(
            Section(
                "Leave Entitlement",
                (
                    "Employees accrue 25 days of annual leave per calendar year, "
                    "credited monthly at a rate of 2.08 days.",
                    "Part-time staff receive leave pro rata to their contracted hours.",
                ),
            ),
            Section(
                "Carry-over Rules",
                (
                    "Up to 5 unused days may be carried over into the next year.",
                    "Carried-over days expire if they are not taken by 31 March.",
                ),
                level=2,
            ),
            Section(
                "Requesting Leave",
                (
                    "Submit leave requests in the HR portal at least 10 working days in advance.",
                    "Your line manager approves or declines each request within 3 working days.",
                ),
            ),
        ),
        table=(
            ("Leave type", "Days per year", "Paid"),
            ("Annual leave", "25", "Yes"),
            ("Volunteering leave", "2", "Yes"),
        ),
    ),
    "security": DocSpec(
        title="Password and Access Standard",
        sections=(
            Section(
                "Password Requirements",
                (
                    "Passwords must be at least 14 characters long and must not be reused.",
                    "Service account passwords are rotated every 90 days by the platform team.",
                ),
            ),
            Section(
                "Multi-factor Authentication",
                (
                    "Multi-factor authentication is mandatory for email, VPN and the HR portal.",
                    "Hardware security keys are issued to administrators on their first day.",
                ),
                level=2,
            ),
            Section(
                "Reporting Incidents",
                (
                    "Report suspected phishing to security@northwind.example within 1 hour.",
                    "Do not forward the suspicious message to colleagues.",
                ),
            ),
        ),
        table=(
            ("System", "MFA required", "Session timeout"),
            ("VPN", "Yes", "8 hours"),
            ("HR portal", "Yes", "30 minutes"),
        ),
    ),
    "expenses": DocSpec(
        title="Expense Claims Guide",
        sections=(
            Section(
                "Submitting Claims",
                (
                    "Expense claims must be submitted within 30 days of purchase.",
                    "Attach an itemised receipt for every expense above 20 euros.",
                ),
            ),
            Section(
                "Reimbursement",
                (
                    "Approved claims are reimbursed with the next monthly payroll run.",
                    "The finance team audits a random sample of 5 percent of all claims.",
                ),
            ),
        ),
        table=(
            ("Category", "Limit", "Approval"),
            ("Client dinner", "60 euros per person", "Line manager"),
            ("Hotel", "150 euros per night", "Department head"),
        ),
    ),
    "travel": DocSpec(
        title="Business Travel Rules",
        sections=(
            Section(
                "Booking Travel",
                (
                    "All business trips are booked through the TravelDesk portal.",
                    "Flights under 4 hours are booked in economy class.",
                ),
            ),
            Section(
                "Per Diem",
                (
                    "The daily per diem for meals abroad is 45 euros.",
                    "Trains are preferred over flights for journeys under 500 kilometres.",
                ),
            ),
        ),
        table=(
            ("City", "Per diem", "Hotel cap"),
            ("Berlin", "45 euros", "140 euros"),
            ("London", "55 GBP", "190 GBP"),
        ),
    ),
}

#: Topics accepted by :func:`sample_spec`.
SAMPLE_TOPICS: tuple[str, ...] = tuple(_SAMPLES)


def sample_spec(topic: str = "leave") -> DocSpec:
    """A small realistic spec (2-3 sections, 2 short paragraphs each, a 3x3 table)
    with distinctive, searchable facts. Topics (see :data:`SAMPLE_TOPICS`):

    * ``leave``: "Employees accrue 25 days of annual leave", carry-over of 5 days
      until 31 March (a level-2 section), requests 10 working days in advance.
    * ``security``: passwords of at least 14 characters, MFA mandatory (level 2),
      phishing reported to security@northwind.example within 1 hour.
    * ``expenses``: claims within 30 days, receipts above 20 euros, hotel limit
      150 euros per night.
    * ``travel``: TravelDesk portal, economy under 4 hours, per diem 45 euros.
    """
    try:
        return _SAMPLES[topic]
    except KeyError:
        raise ValueError(f"unknown topic {topic!r}; choose from {SAMPLE_TOPICS}") from None


# --------------------------------------------------------------------------- bad files


def _random_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _bad_corrupt_pdf(path: Path) -> Path:
    """A real PDF cut to its first 40 % of bytes, followed by 512 garbage bytes."""
    data = _pdf_bytes(sample_spec("leave"))
    p = _prepare(path)
    p.write_bytes(data[: int(len(data) * 0.4)] + _random_bytes(1, 512))
    return p


def _bad_empty_txt(path: Path) -> Path:
    p = _prepare(path)
    p.write_bytes(b"")
    return p


def _bad_garbage_docx(path: Path) -> Path:
    """4 KiB of deterministic random bytes (``random.Random(0)``) named ``.docx``."""
    p = _prepare(path)
    p.write_bytes(_random_bytes(0, 4096))
    return p


def _bad_protected_pdf(path: Path) -> Path:
    """A real text PDF encrypted with user password ``"secret"`` (owner password
    ``"owner-secret"``, RC4-128 so the output stays deterministic; AES would use
    random IVs)."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(io.BytesIO(_pdf_bytes(sample_spec("security"))))
    writer = PdfWriter(clone_from=reader)
    writer.encrypt(user_password="secret", owner_password="owner-secret", algorithm="RC4-128")
    p = _prepare(path)
    with p.open("wb") as fh:
        writer.write(fh)
    return p


_LATIN1_TEXT = (
    "Café policy\n"
    "\n"
    "Employees may use the café on the ground floor from 08:00 to 16:00.\n"
    "The café serves crème brûlée and déjà-vu specials every Friday.\n"
    "Prices are shown in € and include the 7 % staff discount.\n"
)


def _bad_latin1_txt(path: Path) -> Path:
    """Accented text encoded as cp1252 (contains ``\\xe9``, ``\\x80``: not valid UTF-8)."""
    p = _prepare(path)
    p.write_bytes(_LATIN1_TEXT.encode("cp1252"))
    return p


def _bad_binary_txt(path: Path) -> Path:
    """2 KiB of deterministic random bytes with NULs sprinkled in, named ``.txt``."""
    data = bytearray(_random_bytes(2, 2048))
    data[::16] = bytes(len(data[::16]))
    p = _prepare(path)
    p.write_bytes(bytes(data))
    return p


def _bad_image_xyz(path: Path) -> Path:
    """A PNG signature plus deterministic bytes, with an unsupported ``.xyz`` extension."""
    p = _prepare(path)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _random_bytes(3, 256))
    return p


BAD_FILES: dict[str, Callable[[Path], Path]] = {
    "corrupt.pdf": _bad_corrupt_pdf,
    "empty.txt": _bad_empty_txt,
    "garbage.docx": _bad_garbage_docx,
    "protected.pdf": _bad_protected_pdf,
    "latin1.txt": _bad_latin1_txt,
    "binary.txt": _bad_binary_txt,
    "image.xyz": _bad_image_xyz,
}


# --------------------------------------------------------------------------- big files

MIB = 1024 * 1024
_BIG_LINE = (
    "Line {n:09d}: Northwind Labs archive record. Employees accrue leave monthly; "
    "this filler text exists to test size limits.\n"
)


def _big_chunk() -> bytes:
    out = io.StringIO()
    n = 0
    while out.tell() < MIB:
        out.write(_BIG_LINE.format(n=n))
        n += 1
    return out.getvalue().encode("ascii")[:MIB]


def _chunks(total: int, chunk: bytes) -> Iterator[bytes]:
    while total > 0:
        piece = chunk[:total]
        total -= len(piece)
        yield piece


def write_big_file(path: Path, megabytes: float) -> Path:
    """Write an ASCII text file of exactly ``round(megabytes * 1 MiB)`` bytes.

    A 1 MiB block of numbered lines is built once and written repeatedly, so
    even hundreds of MiB take well under a second on a normal disk. The file is
    real data (not sparse), so it reads back as text.
    """
    if megabytes < 0:
        raise ValueError("megabytes must be >= 0")
    total = round(megabytes * MIB)
    chunk = _big_chunk()
    p = _prepare(path)
    with p.open("wb") as fh:
        for piece in _chunks(total, chunk):
            fh.write(piece)
    return p
