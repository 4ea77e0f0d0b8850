"""Reading server-sent events in tests, the way clients do (``httpx-sse``: pings and
other comments skipped, events as they arrive)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event name, data) of each event of ``response`` (streaming or read): JSON data
    decoded, the OpenAI stream's closing ``[DONE]`` kept as the string."""
    for event in EventSource(response).iter_sse():
        yield event.event, event.data if event.data == "[DONE]" else json.loads(event.data)


def sse_list(response: httpx.Response) -> list[tuple[str, Any]]:
    """:func:`sse_events` of a read response, as a list."""
    return list(sse_events(response))
