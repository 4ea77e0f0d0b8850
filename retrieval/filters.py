"""Search filters from the outside world (CLI ``key=value``, API JSON) to a SearchFilter.

Only the fields below exist; anything else is an error that lists them. Values of
one field are alternatives (OR); different fields all apply (AND). The caller's
groups are not a filter field: they come from who is asking (see ``access_scope``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from core.errors import AccessDeniedError, InputError
from core.types import Principal, SearchFilter

FILTER_FIELDS = {
    "source": "the document's path or URL, exactly as `enclave docs list` shows it",
    "tag": "a tag given at ingestion (--tag)",
    "mime_type": "e.g. application/pdf, text/markdown",
    "doc_id": "a document id from `enclave docs list`",
    "modified_after": "ISO date/time (2026-01-31, 2026-01-31T12:00:00+01:00) or Unix seconds",
    "modified_before": "ISO date/time or Unix seconds",
}
MAX_FILTER_VALUES = 100
"""Alternatives one filter field may list (each becomes a condition of the store query)."""
MAX_FILTER_CHARS = 2048


def parse_filter_args(items: Sequence[str]) -> dict[str, list[str]]:
    """``["tag=hr", "tag=legal", "mime_type=application/pdf"]`` -> fields with their values."""
    fields: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InputError(
                f"filter {item!r} is not key=value; e.g. --filter tag=hr "
                f"(keys: {', '.join(FILTER_FIELDS)})"
            )
        fields.setdefault(key, []).append(value)
    return fields


def build_filter(
    fields: Mapping[str, str | Sequence[str]] | None, groups: tuple[str, ...] | None
) -> SearchFilter:
    """A SearchFilter for the access scope ``groups`` narrowed by ``fields``."""
    values: dict[str, tuple[str, ...]] = {}
    for key, raw in (fields or {}).items():
        if key not in FILTER_FIELDS:
            raise InputError(f"unknown filter field {key!r}; use one of {', '.join(FILTER_FIELDS)}")
        items = (raw,) if isinstance(raw, str) else tuple(raw)
        if len(items) > MAX_FILTER_VALUES:
            raise InputError(
                f"filter field {key!r} lists {len(items)} values; give at most "
                f"{MAX_FILTER_VALUES} (or filter on a tag instead)"
            )
        cleaned = tuple(str(v).strip() for v in items if str(v).strip())
        if not cleaned:
            raise InputError(f"filter field {key!r} has no value")
        if any(len(v) > MAX_FILTER_CHARS for v in cleaned):
            raise InputError(
                f"a value of filter field {key!r} is over {MAX_FILTER_CHARS} characters"
            )
        values[key] = cleaned
    return SearchFilter(
        groups=groups,
        sources=values.get("source", ()),
        tags=values.get("tag", ()),
        mime_types=values.get("mime_type", ()),
        doc_ids=values.get("doc_id", ()),
        modified_after=_time(values, "modified_after"),
        modified_before=_time(values, "modified_before"),
    )


def access_scope(principal: Principal, requested: Sequence[str] | None) -> tuple[str, ...] | None:
    """The groups a search may see: ``None`` is everything (admin, nothing requested).

    ``requested`` narrows the search to some groups; a non-admin may only name groups
    they hold.
    """
    if requested is None:
        return None if principal.admin else principal.groups
    wanted = tuple(dict.fromkeys(g.strip() for g in requested if g.strip()))
    if not wanted:
        raise InputError("the group list is empty; name at least one group, or leave it out")
    if not principal.admin:
        missing = [g for g in wanted if g not in principal.groups]
        if missing:
            raise AccessDeniedError(
                f"{principal.name} is not in group(s) {', '.join(missing)}; "
                f"search only groups you hold ({', '.join(principal.groups) or 'none'})"
            )
    return wanted


def _time(values: dict[str, tuple[str, ...]], key: str) -> float | None:
    given = values.get(key)
    if not given:
        return None
    if len(given) > 1:
        raise InputError(f"filter field {key!r} takes one value, not {len(given)}")
    return parse_instant(given[0], f"filter {key}=")


def parse_instant(text: str, what: str) -> float:
    """An ISO 8601 date or date-time (UTC when it names no zone) or Unix seconds, as
    Unix seconds; ``what`` names the input in the error."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{what}{text!r} is not a date; use ISO 8601 (2026-01-31 or "
            "2026-01-31T12:00:00+01:00) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
