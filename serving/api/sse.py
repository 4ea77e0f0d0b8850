"""Server-sent events (sse-starlette): every stream gets keep-alive pings, so proxies keep
a slow answer's connection open, and one driver runs an answer session to the client."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from sse_starlette import EventSourceResponse, ServerSentEvent

from serving.answers import AnswerEvent, Completed
from serving.answers.session import AnswerSession
from serving.api.errors import classify, error_body

logger = logging.getLogger(__name__)

PING_S = 15
"""Seconds between keep-alive comments while a stream is quiet."""

Render = Callable[[AnswerEvent], Iterable[ServerSentEvent]]


def event(data: object, name: str | None = None) -> ServerSentEvent:
    """One event: JSON data, named or (as OpenAI streams use) bare."""
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=name, sep="\n")


DONE = ServerSentEvent(data="[DONE]", sep="\n")
"""The end of an OpenAI-compatible stream."""


def respond(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=PING_S,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def stream_events(
    session: AnswerSession, first: AnswerEvent | None, render: Render
) -> AsyncIterator[ServerSentEvent]:
    """Drive a session, rendering each event; audit cancellations and failures. No thread
    is held while the model writes. A client that disconnects cancels this generator,
    which closes the LLM stream."""
    current = first
    finished = False
    try:
        while current is not None:
            for rendered in render(current):
                yield rendered
            if isinstance(current, Completed):
                finished = True
                return
            current = await session.anext_event()
    except Exception as exc:
        finished = True
        status, type_, message = classify(exc)
        if status == 500:
            logger.error("internal error mid-stream", exc_info=exc)
        await session.afail(f"error: {type_}")
        yield event(error_body(type_, message), "error")
    finally:
        if not finished:  # the client went away: stop generating, keep the partial answer
            await session.afail("cancelled")
