"""Broken and hostile files for the reliability tests, generated at test time.

Nothing here is committed as a binary: every file is built by code, quickly and
small on disk, including the decompression bombs (their compressed streams are
built from one compressed block repeated, with the CRC-32 combined arithmetically
instead of computed over gigabytes).

:func:`write_hostile_corpus` writes the whole corpus into a folder and returns what
each file is and what must happen to it (:class:`Hostile`). The individual makers
can be used on their own, e.g. ``zip_bomb(path, expanded=3 * GIB)``.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.data.make_files import (
    _pdf_bytes,
    sample_spec,
    write_csv,
    write_docx,
    write_md,
    write_pdf,
    write_xlsx,
)

__all__ = [
    "GIB",
    "MIB",
    "Hostile",
    "billion_laughs_docx",
    "crc32_combine",
    "crc32_repeated",
    "deep_html",
    "hostile_corpus",
    "pdf_bomb",
    "single_line_text",
    "truncated_pdf",
    "write_hostile_corpus",
    "zip_bomb",
]

MIB = 1024 * 1024
GIB = 1024 * MIB

# -- CRC-32 without reading the data ---------------------------------------------------------
# zlib's crc32_combine (GF(2) matrix method), which Python's zlib does not expose: the CRC of
# a gigabyte of repeated blocks is computed from the CRC of one block in ~30 squarings.
_CRC_POLY = 0xEDB88320


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    row = 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``."""
    if len2 <= 0:
        return crc1
    odd = [_CRC_POLY] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_repeated(block: bytes, times: int) -> int:
    """``zlib.crc32(block * times)`` without building it (by doubling)."""
    result = 0
    power, power_len = zlib.crc32(block), len(block)
    while times:
        if times & 1:
            result = crc32_combine(result, power, power_len)
        power = crc32_combine(power, power, power_len)
        power_len *= 2
        times >>= 1
    return result


# -- raw deflate in independent pieces -------------------------------------------------------
def _deflate_piece(data: bytes, *, last: bool) -> bytes:
    """Raw deflate of ``data`` with a fresh dictionary, ending byte-aligned. Pieces can be
    concatenated (and one piece repeated) into a valid stream; only the last is final."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH
    )


@dataclass(frozen=True)
class _Bomb:
    """A deflate stream of ``head + block * times + tail``: ``pieces`` yields its bytes."""

    head: bytes
    block: bytes
    times: int
    tail: bytes

    @property
    def size(self) -> int:
        return len(self.head) + len(self.block) * self.times + len(self.tail)

    @property
    def crc(self) -> int:
        crc = zlib.crc32(self.head)
        crc = crc32_combine(
            crc, crc32_repeated(self.block, self.times), len(self.block) * self.times
        )
        return crc32_combine(crc, zlib.crc32(self.tail), len(self.tail))

    def pieces(self) -> Iterable[bytes]:
        yield _deflate_piece(self.head, last=False)
        block = _deflate_piece(self.block, last=False)
        for _ in range(self.times):
            yield block
        yield _deflate_piece(self.tail, last=True)


def _bomb(head: bytes, unit: bytes, expanded: int, tail: bytes) -> _Bomb:
    """A stream of about ``expanded`` bytes: ``head``, ``unit`` repeated, ``tail``."""
    block = unit * max(1, MIB // len(unit))
    times = max(1, (expanded - len(head) - len(tail)) // len(block))
    return _Bomb(head, block, times, tail)


# -- a minimal zip writer (streams entries; sizes may be declared falsely) -------------------
_DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 15
_DOS_TIME = (9 << 11) | (30 << 5)


@dataclass(frozen=True)
class _Entry:
    name: str
    data: bytes | _Bomb
    declared_size: int | None = None  # a lie about the inflated size, for the "lying" bomb


def _write_zip(path: Path, entries: Iterable[_Entry]) -> Path:
    """Write deflated ``entries`` as a zip (no zip64: every size must be under 4 GiB)."""
    central: list[bytes] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for entry in entries:
            if isinstance(entry.data, _Bomb):
                bomb = entry.data
                crc, size, pieces = bomb.crc, bomb.size, list(bomb.pieces())
            else:
                crc, size = zlib.crc32(entry.data), len(entry.data)
                pieces = [_deflate_piece(entry.data, last=True)]
            compressed = sum(len(p) for p in pieces)
            declared = size if entry.declared_size is None else entry.declared_size
            name = entry.name.encode()
            offset = out.tell()
            fields = (20, 0, 8, _DOS_TIME, _DOS_DATE, crc, compressed, declared, len(name), 0)
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name)
            for piece in pieces:
                out.write(piece)
            central.append(
                struct.pack(
                    "<4s6H3L5H2L",
                    b"PK\x01\x02",
                    20,
                    *fields[:-1],
                    0,  # extra
                    0,  # comment
                    0,  # disk
                    0,  # internal attributes
                    0o600 << 16,
                    offset,
                )
                + name
            )
        start = out.tell()
        for record in central:
            out.write(record)
        size = out.tell() - start
        out.write(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), size, start, 0)
        )
    return path


_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
_W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_DOC_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document ' + _W + b"><w:body>"
)
_DOC_TAIL = b"</w:body></w:document>"
_BOMB_PARAGRAPH = b"<w:p><w:r><w:t>Northwind zip bomb paragraph.</w:t></w:r></w:p>"


def zip_bomb(path: Path, expanded: int = 3 * GIB, *, declared: int | None = None) -> Path:
    """A well-formed DOCX whose ``word/document.xml`` inflates to ``expanded`` bytes of
    valid WordprocessingML, two paragraphs with whitespace between them (~1000:1: 3 GiB
    is ~3 MB on disk, written in a fraction of a second). ``declared``: state another
    inflated size in the zip headers (a lying bomb)."""
    bomb = _bomb(_DOC_HEAD + _BOMB_PARAGRAPH, b" ", expanded, _BOMB_PARAGRAPH + _DOC_TAIL)
    return _write_zip(
        path,
        [
            _Entry("[Content_Types].xml", _CONTENT_TYPES),
            _Entry("_rels/.rels", _RELS),
            _Entry("word/document.xml", bomb, declared_size=declared),
        ],
    )


def billion_laughs_docx(path: Path) -> Path:
    """A small DOCX whose document declares nested XML entities (the "billion laughs"): an
    XML parser that expands entities would build gigabytes of text."""
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10)))
        for i in range(1, 10)
    )
    document = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE w:document [' + entities + b"]>"
        b"<w:document " + _W + b"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>"
        b"<w:p><w:r><w:t>Billion laughs.</w:t></w:r></w:p></w:body></w:document>"
    )
    return _write_zip(
        path,
        [
            _Entry("[Content_Types].xml", _CONTENT_TYPES),
            _Entry("_rels/.rels", _RELS),
            _Entry("word/document.xml", document),
        ],
    )


# -- PDF ---------------------------------------------------------------------------------------
def truncated_pdf(path: Path, keep: float = 0.6) -> Path:
    """A real text PDF cut off after ``keep`` of its bytes (no cross-reference table, no
    trailer, a stream cut in the middle), as an interrupted download leaves it."""
    data = _pdf_bytes(sample_spec("leave"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def pdf_bomb(path: Path, expanded: int = GIB) -> Path:
    """A one-page PDF whose content stream inflates (FlateDecode) to ``expanded`` bytes of
    text-showing operators."""
    bomb = _bomb(
        b"BT /F1 12 Tf 72 720 Td (Northwind PDF bomb) Tj\n",
        b"(bomb ) Tj\n",
        expanded,
        b"ET\n",
    )
    stream = b"".join(_zlib_wrap(bomb))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """zlib's adler32_combine: the Adler-32 of ``A + B`` from those of ``A`` and ``B``."""
    base = 65521
    rem = len2 % base
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 += (adler2 & 0xFFFF) + base - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + base - rem
    sum1 %= base
    sum2 %= base
    return sum1 | (sum2 << 16)


def _zlib_wrap(bomb: _Bomb) -> Iterable[bytes]:
    """The raw deflate pieces of ``bomb`` as a zlib stream (header, pieces, Adler-32)."""
    repeated, repeated_len = 1, 0  # Adler-32 of the empty string, by doubling as for CRC
    power, power_len, times = zlib.adler32(bomb.block), len(bomb.block), bomb.times
    while times:
        if times & 1:
            repeated = _adler32_combine(repeated, power, power_len)
            repeated_len += power_len
        power = _adler32_combine(power, power, power_len)
        power_len *= 2
        times >>= 1
    adler = _adler32_combine(zlib.adler32(bomb.head), repeated, repeated_len)
    adler = _adler32_combine(adler, zlib.adler32(bomb.tail), len(bomb.tail))
    yield b"\x78\xda"
    yield from bomb.pieces()
    yield struct.pack(">L", adler)


# -- HTML and text -----------------------------------------------------------------------------
def deep_html(path: Path, depth: int = 100_000) -> Path:
    """``depth`` nested ``<div>`` elements around one sentence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"<!DOCTYPE html><html><head><title>Deep</title></head><body>"
        + b"<div>" * depth
        + b"<p>Northwind deep HTML sentence.</p>"
        + b"</div>" * depth
        + b"</body></html>"
    )
    return path


def single_line_text(path: Path, size: int, *, words: bool = True) -> Path:
    """A ``size``-byte text file with no line break: words separated by spaces, or (with
    ``words=False``) one unbroken run of letters."""
    unit = b"Northwind archive record without a line break " if words else b"Northwind"
    block = unit * (MIB // len(unit) + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left > 0:
            piece = block[:left]
            out.write(piece)
            left -= len(piece)
    return path


# -- the corpus --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    """One entry of the corpus. ``name``: as written (bytes where it is not valid UTF-8);
    ``shown``: the file name as ingestion reports it; ``reason``: words its ``failed``
    reason must contain, or ``None`` for a file that must be ingested; ``regular``: a
    regular file (one that can be uploaded), not a link or a pipe."""

    name: str | bytes
    reason: str | None
    what: str
    regular: bool = True

    @property
    def shown(self) -> str:
        raw = self.name if isinstance(self.name, bytes) else self.name.encode()
        return raw.decode("utf-8", "backslashreplace")

    @property
    def upload_name(self) -> str:
        """A name for an HTTP upload (which carries text): Latin-1 bytes read as Latin-1."""
        return self.name.decode("latin-1") if isinstance(self.name, bytes) else self.name


Maker = Callable[[Path], object]


def _real(write: Callable[[Path, Any], Path], topic: str, suffix: str) -> Maker:
    """A real document of ``topic`` written as ``suffix`` (its own format), whatever the
    name it ends up under."""

    def make(path: Path) -> None:
        real = write(path.with_name(path.name + ".tmp" + suffix), sample_spec(topic))
        real.rename(path)

    return make


def _data(data: bytes) -> Maker:
    return lambda path: path.write_bytes(data)


def _plain_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "A zip archive, not an Office document.")


_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # a compound file header: .doc


def hostile_corpus(max_file_mb: float) -> list[tuple[Hostile, Maker]]:
    """The corpus for an ingestion limited to ``max_file_mb`` (which must be at least 4, so
    that the bombs, ~3 MB each, are parsed and not refused for their size): the broken
    and hostile files, and good files beside them (``reason=None``)."""
    if max_file_mb < 4:
        raise ValueError("the bombs are ~3 MB on disk: give max_file_mb >= 4")
    limit = int(max_file_mb * MIB)
    entries: list[tuple[Hostile, Maker]] = [
        # good files, and good files with hostile names
        (Hostile("good.md", None, "a good Markdown file"), _real(write_md, "leave", ".md")),
        (Hostile("good.docx", None, "a good DOCX"), _real(write_docx, "security", ".docx")),
        (
            Hostile(b"caf\xe9-good.md", None, "a good file whose name is Latin-1, not UTF-8"),
            _real(write_md, "travel", ".md"),
        ),
        (
            Hostile(b"r\xe9sum\xe9-good.docx", None, "a good DOCX with a Latin-1 name"),
            _real(write_docx, "expenses", ".docx"),
        ),
        (
            Hostile(b"\xff\xfe-good.pdf", None, "a good PDF whose name is not UTF-8"),
            _real(write_pdf, "leave", ".pdf"),
        ),
        (
            Hostile(b"\xe9t\xe9.csv", None, "a table, titled by its Latin-1 file name"),
            _real(write_csv, "travel", ".csv"),
        ),
        (
            Hostile("deep-200.html", None, "200 nested <div>s: within libxml2's limit"),
            lambda p: deep_html(p, depth=200),
        ),
        (
            Hostile("one-line.txt", None, "64 KiB of words without a line break"),
            lambda p: single_line_text(p, 64 * 1024),
        ),
        (
            Hostile("no-spaces.txt", None, "32 KiB without a line break or a space"),
            lambda p: single_line_text(p, 32 * 1024, words=False),
        ),
        # broken and hostile files
        (Hostile("truncated.pdf", "corrupt or truncated PDF", "a PDF cut short"), truncated_pdf),
        (Hostile("zip-bomb.docx", "zip bomb", "a DOCX inflating to 3 GiB"), zip_bomb),
        (
            Hostile("lying-zip-bomb.docx", "zip bomb", "a DOCX declaring 100 kB, inflating 3 GiB"),
            lambda p: zip_bomb(p, declared=100_000),
        ),
        (
            Hostile("billion-laughs.docx", "not a valid DOCX", "nested XML entities"),
            billion_laughs_docx,
        ),
        (Hostile("pdf-bomb.pdf", "decompression bomb", "a page inflating to 1 GiB"), pdf_bomb),
        (
            Hostile("deep.html", "beyond the parser's limits", "100,000 nested <div>s"),
            deep_html,
        ),
        (
            Hostile("deep.md", "beyond the parser's limits", "5,000 nested block quotes"),
            lambda p: p.write_text("Intro.\n\n" + "> " * 5000 + "Deep.\n\nAfter.\n"),
        ),
        (Hostile("empty.pdf", "empty file", "0 bytes"), _data(b"")),
        (
            Hostile("too-long-line.txt", "over the", "one line, just over the size limit"),
            lambda p: single_line_text(p, limit + 1),
        ),
        (
            Hostile("pdf-named.docx", "not a valid DOCX", "a PDF named .docx"),
            _real(write_pdf, "leave", ".pdf"),
        ),
        (
            Hostile("docx-named.pdf", "not a PDF file", "a DOCX named .pdf"),
            _real(write_docx, "leave", ".docx"),
        ),
        (
            Hostile("xlsx-named.docx", "DOCX", "a spreadsheet named .docx"),
            _real(write_xlsx, "leave", ".xlsx"),
        ),
        (Hostile("png-named.txt", "binary content", "a PNG named .txt"), _data(_PNG)),
        (Hostile("png-named.html", "binary content", "a PNG named .html"), _data(_PNG)),
        (
            Hostile("zip-named.pptx", "not an Office document", "a plain zip named .pptx"),
            _plain_zip,
        ),
        (
            Hostile("legacy-named.docx", "old binary", "a .doc (compound file) named .docx"),
            _data(_OLE),
        ),
        (
            Hostile(b"r\xe9sum\xe9-broken.pdf", "not a PDF file", "garbage, a Latin-1 name"),
            _data(b"not a PDF at all\n" * 10),
        ),
        # not regular files
        (
            Hostile("loop.md", "symbolic link", "a link to itself", regular=False),
            lambda p: p.symlink_to(p.name),
        ),
        (
            Hostile("dangling.txt", "symbolic link", "a link to nothing", regular=False),
            lambda p: p.symlink_to("no-such-file.txt"),
        ),
    ]
    return entries


def write_hostile_corpus(folder: Path, max_file_mb: float) -> list[Hostile]:
    """Write :func:`hostile_corpus` into ``folder``, plus what ingestion must pass over
    silently: a named pipe (opening it would block), a link to /dev/zero (endless) and a
    link to the folder itself (a loop for a walker that follows links). Returns the
    entries whose outcome is reported."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for hostile, make in hostile_corpus(max_file_mb):
        raw = hostile.name if isinstance(hostile.name, bytes) else hostile.name.encode()
        make(folder / os.fsdecode(raw))
        written.append(hostile)
    os.mkfifo(folder / "pipe.txt")
    (folder / "zeros.txt").symlink_to("/dev/zero")
    (folder / "again").symlink_to(".")
    return written
