"""Original files: uploads kept one folder per upload, and downloads of what was ingested.

An upload is written to ``<data_dir>/uploads/<upload id>/<file name>`` (private to the
server's user), so two uploads never share a path, whatever their names; the document's
source is that path, and the original is removed with its document.

A download serves exactly the bytes that were ingested, never whatever a path leads to
now: the source must still be a real path (no symbolic link anywhere on it), it is
opened without following links, read into a private spool while hashed, and sent only
when its SHA-256 is the one recorded at ingestion. Otherwise ``ConflictError`` (409)
says the file changed and asks for a re-ingest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO
from urllib.parse import quote

from backends.sql.registry import RegisteredDocument
from core.errors import ConflictError, InputError, NotFoundError

MAX_NAME_BYTES = 200
_SPOOL_BYTES = 8 << 20
_BLOCK = 1 << 20


def safe_name(name: str) -> str:
    """A file name safe to write in an upload folder: no path, no control or reserved
    characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8 (the extension kept)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch if ch.isprintable() and ch not in '<>:"|?*' else "_" for ch in base)
    cleaned = cleaned.strip(" .")
    if not cleaned:
        raise InputError(f"upload file name {name!r} is empty or invalid; name the file")
    if len(cleaned.encode("utf-8")) <= MAX_NAME_BYTES:
        return cleaned
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot or len(suffix.encode("utf-8")) > 16:
        stem, suffix = cleaned, ""
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - (1 if suffix else 0)
    short = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
    return f"{short}.{suffix}" if suffix else short


def unique_in(folder: Path, name: str) -> Path:
    """``folder / name``, or ``name (2)``, ``name (3)``... when taken (one upload may
    carry two files of the same name)."""
    target = folder / name
    stem, suffix = target.stem, target.suffix
    n = 2
    while target.exists():
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def save_upload(source: BinaryIO, target: Path, max_bytes: int) -> bool:
    """Copy an upload to ``target`` atomically; False (nothing written) when over the limit."""
    partial = target.with_name(f".{uuid.uuid4().hex[:8]}.part")
    size = 0
    with partial.open("wb") as out:
        while block := source.read(_BLOCK):
            size += len(block)
            if size > max_bytes:
                break
            out.write(block)
    if size > max_bytes:
        partial.unlink(missing_ok=True)
        return False
    partial.replace(target)
    return True


def open_original(record: RegisteredDocument, max_bytes: int) -> IO[bytes]:
    """The ingested bytes of a document, in a spool positioned at the start (the caller
    closes it). ``NotFoundError`` when the file is gone, ``ConflictError`` when what is at
    its path now is not what was ingested."""
    document = record.document
    path = document.source
    gone = NotFoundError(
        f"the original file of document {document.doc_id} is no longer at "
        f"{Path(path).name} on the server; ask an administrator to re-ingest it"
    )
    changed = ConflictError(
        f"the original file of document {document.doc_id} ({Path(path).name}) changed on "
        "the server since it was ingested, so it is not served; ask an administrator to "
        "ingest it again"
    )
    if "\x00" in path or not Path(path).is_absolute():
        raise gone
    if not os.path.lexists(path):
        raise gone
    if os.path.realpath(path) != os.path.normpath(path):
        raise changed  # a link now stands somewhere on the path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise gone from None
    except OSError:
        raise changed from None
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                raise changed
            digest = hashlib.sha256()
            size = 0
            while block := source.read(_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise changed
                digest.update(block)
                spool.write(block)
        if digest.hexdigest() != document.content_hash:
            raise changed
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def chunks_of(spool: IO[bytes]) -> Iterator[bytes]:
    """The spool's bytes in blocks, closing it at the end."""
    try:
        while block := spool.read(_BLOCK):
            yield block
    finally:
        spool.close()


def attachment(name: str) -> str:
    """A Content-Disposition that names the download (RFC 6266, any characters)."""
    quoted = quote(name)
    if quoted == name:
        return f'attachment; filename="{name}"'
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=utf-8''{quoted}"
