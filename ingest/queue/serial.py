"""Documents and reports to and from the JSON that travels through Redis."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.types import Document
from ingest.discover import Failure
from ingest.pipeline import IngestReport

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# -- (de)serialisation ------------------------------------------------------------------------


def document_dict(document: Document) -> dict[str, Any]:
    return asdict(document)  # groups and tags (tuples) travel as JSON lists


def document_from(raw: dict[str, Any]) -> Document:
    return Document(**{**raw, "groups": tuple(raw["groups"]), "tags": tuple(raw["tags"])})


def report_from_dict(raw: dict[str, Any]) -> IngestReport:
    """An :class:`IngestReport` from its ``as_dict`` form."""
    return IngestReport(
        added=int(raw.get("added", 0)),
        updated=int(raw.get("updated", 0)),
        unchanged=int(raw.get("unchanged", 0)),
        deleted=int(raw.get("deleted", 0)),
        chunks_written=int(raw.get("chunks_written", 0)),
        failed=[Failure(f["source"], f["reason"]) for f in raw.get("failed", [])],
        admin_only=int(raw.get("admin_only", 0)),
        warnings=[str(w) for w in raw.get("warnings", [])],
        dry_run=bool(raw.get("dry_run", False)),
        seconds=float(raw.get("seconds", 0.0)),
        stage_seconds={k: float(v) for k, v in raw.get("stage_seconds", {}).items()},
    )


def merge(total: IngestReport, part: IngestReport) -> None:
    total.added += part.added
    total.updated += part.updated
    total.unchanged += part.unchanged
    total.deleted += part.deleted
    total.chunks_written += part.chunks_written
    total.failed += part.failed
    total.admin_only += part.admin_only
    total.warnings += part.warnings
    for stage, seconds in part.stage_seconds.items():
        total.stage_seconds[stage] = total.stage_seconds.get(stage, 0.0) + seconds
