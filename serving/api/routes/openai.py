"""The OpenAI-compatible endpoints: existing clients and agents work unchanged."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from sse_starlette import ServerSentEvent

from core.errors import InputError
from serving.answers import AnswerEvent, Retrieved, Token
from serving.api.answering import citations, claims, guarded, passages, usage_out
from serving.api.deps import KeyDep, ServicesDep
from serving.api.errors import errors, or_stream
from serving.api.schemas import AUTO_MODEL, ChatRequest, ModelOut, ModelsOut
from serving.api.sse import DONE, event, respond, stream_events

router = APIRouter(tags=["openai"])


@router.get("/v1/models", responses=errors())
def models(services: ServicesDep, _key: KeyDep) -> ModelsOut:
    """The models a request may name (OpenAI format); `enclave` lets the router choose."""
    names = [AUTO_MODEL, *services.answerer.router.names]
    return ModelsOut(data=[ModelOut(id=n) for n in names])


def _conversation(body: ChatRequest) -> tuple[str, list[tuple[str, str]]]:
    """The question (the last user message) and the (question, answer) turns before it."""
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise InputError("the last message must be the user's question (role `user`)")
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for m in turns[:-1]:
        if m.role == "user":
            pending = m.text()
        elif pending is not None:
            history.append((pending, m.text()))
            pending = None
    return turns[-1].text(), history


@router.post(
    "/v1/chat/completions",
    responses={
        **or_stream(
            "A chat completion; with `stream`, `chat.completion.chunk` events, then "
            "`[DONE]` (a failure: an `error` event).",
            ["error"],
            named=False,
        ),
        **errors(400, 422, 502),
    },
)
async def chat_completions(body: ChatRequest, services: ServicesDep, key: KeyDep) -> Any:
    """OpenAI-compatible chat: the last user message is the question, earlier turns the
    conversation. Answers are grounded in the key's documents; citations and passages
    come in extra fields (``citations``, ``claims`` on the response / the last stream
    chunk)."""
    question, history = _conversation(body)
    model = None if body.model == AUTO_MODEL else body.model
    session = services.session(key, "chat", question, history=history, model=model)
    created = int(time.time())
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        done = await guarded(session, session.arun_to_end)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": done.answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.answer.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage_out(done).model_dump(),
            "citations": citations(done),
            "claims": claims(done),
            "passages": [p.model_dump() for p in passages(done, key.principal)],
            "answer_id": session.answer_id,
        }
    first = await guarded(session, session.anext_event)

    def chunk(
        model_name: str, delta: dict[str, str], finish: str | None, **extra: Any
    ) -> ServerSentEvent:
        return event(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    def render(current: AnswerEvent) -> Iterable[ServerSentEvent]:
        if isinstance(current, Retrieved):
            return [chunk(current.model, {"role": "assistant", "content": ""}, None)]
        if isinstance(current, Token):
            model_name = session.retrieved.model if session.retrieved else ""
            return [chunk(model_name, {"content": current.text}, None)]
        text = (
            []
            if session.pieces
            else [chunk(current.answer.model, {"content": current.answer.text}, None)]
        )
        last = chunk(
            current.answer.model,
            {},
            "stop",
            usage=usage_out(current).model_dump(),
            citations=citations(current),
            claims=claims(current),
            answer_id=session.answer_id,
        )
        return [*text, last, DONE]

    return respond(stream_events(session, first, render))
