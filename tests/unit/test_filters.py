"""Filters from the outside world and the caller's access scope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import AccessDeniedError, InputError
from core.types import Principal, SearchFilter
from retrieval.filters import access_scope, build_filter, parse_filter_args

ALICE = Principal("alice", groups=("everyone", "hr"))
ADMIN = Principal("root", admin=True)


def test_key_value_arguments_group_by_field() -> None:
    fields = parse_filter_args(["tag=hr", "tag = legal ", "mime_type=application/pdf"])
    assert fields == {"tag": ["hr", "legal"], "mime_type": ["application/pdf"]}
    built = build_filter(fields, ("everyone",))
    assert built == SearchFilter(
        groups=("everyone",), tags=("hr", "legal"), mime_types=("application/pdf",)
    )


@pytest.mark.parametrize("bad", ["tag", "=hr", "tag=", " = "])
def test_malformed_filter_arguments_are_clear_errors(bad: str) -> None:
    with pytest.raises(InputError, match="is not key=value"):
        parse_filter_args([bad])


def test_unknown_fields_and_empty_values_are_refused() -> None:
    with pytest.raises(InputError, match=r"unknown filter field 'colour'.*source, tag"):
        build_filter({"colour": "red"}, None)
    with pytest.raises(InputError, match="'tag' has no value"):
        build_filter({"tag": ["  "]}, None)
    # groups are not a filter: they come from who is asking
    with pytest.raises(InputError, match="unknown filter field 'groups'"):
        build_filter({"groups": "hr"}, None)


def test_modified_time_accepts_iso_dates_and_unix_seconds() -> None:
    built = build_filter(
        {"modified_after": "2026-01-31", "modified_before": "2026-02-01T12:00:00+01:00"}, None
    )
    assert built.modified_after == datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    assert built.modified_before == datetime(2026, 2, 1, 11, 0, tzinfo=UTC).timestamp()
    assert build_filter({"modified_after": "1700000000"}, None).modified_after == 1700000000.0
    with pytest.raises(InputError, match="is not a date"):
        build_filter({"modified_after": "last tuesday"}, None)
    with pytest.raises(InputError, match="takes one value"):
        build_filter({"modified_after": ["2026-01-01", "2026-02-01"]}, None)


def test_access_scope_is_the_callers_groups_narrowed_never_widened() -> None:
    assert access_scope(ADMIN, None) is None  # admin: everything
    assert access_scope(ADMIN, ["finance"]) == ("finance",)  # admin may look as any group
    assert access_scope(ALICE, None) == ("everyone", "hr")
    assert access_scope(ALICE, ["hr", "hr"]) == ("hr",)
    assert access_scope(Principal("nobody"), None) == ()  # no groups: sees nothing
    with pytest.raises(AccessDeniedError, match=r"alice is not in group.*finance"):
        access_scope(ALICE, ["hr", "finance"])
    with pytest.raises(InputError, match="group list is empty"):
        access_scope(ALICE, [" "])
