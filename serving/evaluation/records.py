"""Evaluation records: ``<data_dir>/eval/<kind>-<UTC time>.json``, left by every run of
``enclave eval retrieval`` / ``enclave eval answers``; ``GET /v1/quality`` serves the latest.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)


EvalKind = Literal["retrieval", "answers"]


def eval_records_dir(data_dir: Path) -> Path:
    """Where evaluation records are kept (next to the evaluation indexes)."""
    return data_dir / "eval"


def write_eval_record(
    data_dir: Path,
    kind: EvalKind,
    dataset: str,
    results: dict[str, Any],
    now: datetime | None = None,
) -> Path:
    """Write ``<data_dir>/eval/<kind>-<UTC YYYYmmddTHHMMSS>.json`` atomically (a run in the
    same second replaces the earlier record) and return its path."""
    created = (now or datetime.now(UTC)).astimezone(UTC)
    folder = eval_records_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{created.strftime('%Y%m%dT%H%M%S')}.json"
    record = {
        "kind": kind,
        "dataset": dataset,
        "created_at": created.isoformat(timespec="seconds"),
        "results": results,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.replace(path)
    return path


def latest_eval_record(data_dir: Path, kind: EvalKind) -> dict[str, Any] | None:
    """The newest readable record of ``kind``, or None; unreadable files are skipped
    (and logged)."""
    folder = eval_records_dir(data_dir)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{kind}-*.json"), reverse=True):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("skipping unreadable evaluation record %s: %s", path, exc)
            continue
        if not isinstance(record, dict) or record.get("kind") != kind:
            logger.warning("skipping evaluation record %s: not a %s record", path, kind)
            continue
        return record
    return None
