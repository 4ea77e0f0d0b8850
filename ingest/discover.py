"""Which files a job considers, and what identifies them: the paths given (folders walked,
symbolic links judged), each file's source (its resolved path) and document id, its
content hash, and why a file cannot be read, in words an admin can act on.

Symbolic links are not followed unless ``ENCLAVE_INGEST__FOLLOW_LINKS`` is on; then a
link is followed only to a file inside the folder being ingested, and that file is
considered once, under its own path (so its own access rules apply).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Failure:
    """A file that could not be ingested, and why."""

    source: str
    reason: str


def source_of(path: Path) -> str:
    """The registry key of a file: its resolved path, displayable even if not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def doc_id_for(source: str) -> str:
    """A document's id: stable for its source."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def os_reason(exc: OSError, path: Path | None = None) -> str:
    if path is not None and path.is_symlink() and not path.exists():
        return "broken symbolic link (its target is missing, or links loop); fix or remove it"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared during the run; it is removed on the next run if still gone"
    if isinstance(exc, PermissionError):
        return "permission denied; give the Enclave user read access"
    return f"cannot read the file ({exc.strerror or exc})"


def discover(
    paths: Sequence[str | Path], follow_links: bool, failed: list[Failure]
) -> tuple[list[Path], list[Path]]:
    """The files to consider (real paths, each once) and the folders whose missing
    files mean deleted documents. Links: see the module docstring."""
    files: dict[Path, None] = {}
    scopes: list[Path] = []
    for raw in paths:
        given = Path(raw).expanduser()
        try:
            resolved = given.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # ValueError: a NUL byte
            failed.append(Failure(str(raw), "path does not exist; check the spelling or the mount"))
            continue
        if resolved.is_dir():
            scopes.append(resolved)
            for found in walk_files(resolved):
                if not found.is_symlink():
                    files[found] = None
                elif (target := _link_target(found, resolved, follow_links, failed)) is not None:
                    files[target] = None
        elif resolved.is_file():
            if given.is_symlink() and not follow_links:
                failed.append(Failure(str(raw), _link_reason(resolved)))
            else:
                files[resolved] = None
        else:
            failed.append(Failure(str(raw), "not a regular file or folder"))
    return list(files), scopes


def _link_target(link: Path, root: Path, follow_links: bool, failed: list[Failure]) -> Path | None:
    """The file a link inside ``root`` leads to, when links are followed and it lies
    inside ``root``; otherwise None (reported when it leads to a file, or nowhere)."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a loop
        failed.append(Failure(source_of(link), os_reason(FileNotFoundError(), link)))
        return None
    if not target.is_file():
        return None  # a link to a folder, a device or a pipe: passed over
    if not follow_links:
        failed.append(Failure(source_of(link), _link_reason(target)))
        return None
    if not target.is_relative_to(root):
        failed.append(
            Failure(
                source_of(link),
                f"symbolic link to {source_of(target)}, outside the folder being ingested "
                f"({source_of(root)}); not followed. Ingest that file where it lives",
            )
        )
        return None
    return target


def walk_files(folder: Path) -> Iterable[Path]:
    """Regular files and symbolic links under ``folder``, sorted, skipping hidden files
    and folders. Links to folders are not descended into (no loops, nothing outside);
    pipes, sockets and devices are skipped. Links are listed for the caller to judge."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.startswith("~$"):
                continue
            path = Path(root) / name
            if path.is_symlink() or path.is_file():
                yield path


def _link_reason(target: Path) -> str:
    return (
        f"symbolic link to {source_of(target)}; links are not followed. Ingest the file "
        "where it lives, or set ENCLAVE_INGEST__FOLLOW_LINKS=true to follow links that stay "
        "inside the folder being ingested"
    )
