"""Usage analytics from the audit log: questions per day, latency, feedback, top documents.

:func:`usage_report` is a plain function over audit rows as
:meth:`backends.sql.app.AppDatabase.audit_since` yields them, so it can be tested on
hand-made rows. Only answers count (kinds ``ask`` and ``chat``; searches do not). An
answer is *answered*, *abstained* (nothing relevant was found, no model was called) or
*failed* (any status but ``ok``: errors and cancelled streams), so
``questions = answered + abstained + failed`` on every day.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from serving.answers import NOT_COVERED

ANSWER_KINDS = frozenset({"ask", "chat"})
MAX_DAYS = 366
TOP_DOCUMENTS = 10
UNANSWERED = 20
DELETED = "(deleted)"

DocumentLookup = Callable[[str], tuple[str, str] | None]
"""doc id -> (title, source), or None when the document is no longer registered."""


def window_start(days: int, now: float) -> float:
    """Epoch seconds of the first moment of the window: midnight (UTC) ``days - 1``
    days before ``now``'s day, so the window is ``days`` whole calendar days."""
    today = datetime.fromtimestamp(now, UTC).date()
    first = today - timedelta(days=days - 1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _abstained(row: Mapping[str, Any]) -> bool:
    details = row.get("details")
    if details is not None:
        return bool(details.get("abstained"))
    # rows written before details were recorded: the fixed reply, with no passages
    return row.get("answer") == NOT_COVERED and not row.get("chunk_ids")


def usage_report(
    rows: Iterable[Mapping[str, Any]], days: int, now: float, lookup: DocumentLookup
) -> dict[str, Any]:
    """The ``GET /v1/usage`` body for the ``days`` calendar days (UTC) ending on ``now``'s
    day; ``rows`` are audit rows (with feedback and details) from at least that window."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1-{MAX_DAYS}, not {days}")
    since = window_start(days, now)
    first_day = datetime.fromtimestamp(since, UTC).date()
    per_day: dict[date, Counter[str]] = {
        first_day + timedelta(days=i): Counter() for i in range(days)
    }
    stages: dict[str, list[float]] = {}
    feedback: Counter[str] = Counter()
    cited: Counter[str] = Counter()
    unanswered: list[tuple[float, dict[str, Any]]] = []
    for row in rows:
        if row["kind"] not in ANSWER_KINDS:
            continue
        when = datetime.fromisoformat(row["time"])
        stamp = when.timestamp()
        counts = per_day.get(when.astimezone(UTC).date())
        if counts is None:  # outside the window
            continue
        rating = (row.get("feedback") or {}).get("rating")
        if rating in ("up", "down"):
            feedback[rating] += 1
        failed = row["status"] != "ok"
        abstained = not failed and _abstained(row)
        counts["questions"] += 1
        counts["failed" if failed else "abstained" if abstained else "answered"] += 1
        details = row.get("details") or {}
        if not failed:
            for stage, ms in (details.get("timings") or {}).items():
                stages.setdefault(stage, []).append(float(ms))
            stages.setdefault("total", []).append(float(row["latency_ms"]))
        for doc_id in dict.fromkeys(details.get("cited_doc_ids") or ()):
            cited[doc_id] += 1
        reason = (
            "failed"
            if failed
            else "abstained"
            if abstained
            else "thumbs down"
            if rating == "down"
            else None
        )
        if reason is not None:
            unanswered.append(
                (stamp, {"time": row["time"], "question": row["question"], "reason": reason})
            )
    up, down = feedback["up"], feedback["down"]
    top = []
    for doc_id, count in sorted(cited.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DOCUMENTS]:
        found = lookup(doc_id)
        title, source = found if found is not None else (DELETED, DELETED)
        top.append({"doc_id": doc_id, "title": title, "source": source, "citations": count})
    unanswered.sort(key=lambda item: item[0])  # stable: equal times keep their order
    unanswered.reverse()
    return {
        "since": datetime.fromtimestamp(since, UTC).isoformat(),
        "questions_per_day": [
            {
                "date": day.isoformat(),
                **{k: counts[k] for k in ("questions", "answered", "abstained", "failed")},
            }
            for day, counts in per_day.items()
        ],
        "latency_ms": {
            stage: {
                "p50": round(percentile(values, 50), 1),
                "p95": round(percentile(values, 95), 1),
                "count": len(values),
            }
            for stage, values in sorted(stages.items())
        },
        "feedback": {
            "up": up,
            "down": down,
            "ratio": round(up / (up + down), 4) if up + down else None,
        },
        "top_documents": top,
        "unanswered": [item for _, item in unanswered[:UNANSWERED]],
    }
