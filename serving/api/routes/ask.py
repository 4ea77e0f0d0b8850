"""Answers: ``/v1/ask`` (JSON or server-sent events) and feedback on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sse_starlette import ServerSentEvent

from serving.answers import AnswerEvent, Retrieved, Token
from serving.answers.views import PassageOut
from serving.api.answering import ask_response, guarded
from serving.api.deps import KeyDep, ServicesDep
from serving.api.errors import errors, or_stream
from serving.api.schemas import AskRequest, AskResponse, FeedbackRequest, Status
from serving.api.sse import event, respond, stream_events

router = APIRouter(tags=["answers"])


@router.post(
    "/v1/ask",
    response_model=AskResponse,
    responses={
        **or_stream(
            "The answer; with `stream`, server-sent events (each `data` is JSON).",
            ["retrieval", "token", "citations", "done", "error"],
            named=True,
        ),
        **errors(400, 404, 422, 502),
    },
)
async def ask(body: AskRequest, services: ServicesDep, key: KeyDep) -> Any:
    """A grounded answer with citations; with ``stream``, server-sent events
    ``retrieval``, ``token``..., ``citations``, ``done`` (or ``error``)."""
    conversation_id = body.conversation_id or uuid.uuid4().hex
    history = await run_in_threadpool(
        services.db.conversation, conversation_id, key.id, services.settings.llm.history_turns
    )
    session = services.session(
        key,
        "ask",
        body.question,
        history=history,
        conversation_id=conversation_id,
        model=body.model,
        filters=body.filters,
        top_k=body.top_k,
    )
    principal = key.principal
    if not body.stream:
        done = await guarded(session, session.arun_to_end)
        return ask_response(session, done, conversation_id, principal)
    first = await guarded(session, session.anext_event)

    def render(current: AnswerEvent) -> Iterable[ServerSentEvent]:
        if isinstance(current, Retrieved):
            shown = PassageOut.numbered(current.passages, scores=principal.admin)
            data = {
                "passages": [p.model_dump() for p in shown],
                "model": current.model,
                "query": current.query,
                "conversation_id": conversation_id,
            }
            return [event(data, "retrieval")]
        if isinstance(current, Token):
            return [event({"text": current.text}, "token")]
        done = ask_response(session, current, conversation_id, principal).model_dump()
        return [event({"citations": done["citations"]}, "citations"), event(done, "done")]

    return respond(stream_events(session, first, render))


@router.post("/v1/feedback", responses=errors(400, 404, 422))
def feedback(body: FeedbackRequest, services: ServicesDep, key: KeyDep) -> Status:
    """Thumbs up/down (and a comment) on an answer this key received."""
    services.db.add_feedback(
        body.answer_id,
        key.id,
        body.rating,
        body.comment,
        redact_pii=services.settings.api.redact_audit,
    )
    return Status(status="recorded")
