"""What the answer routes share: running a session's steps in worker threads, and the
JSON of a finished answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from core.types import Principal
from serving.answers import Completed
from serving.answers.session import AnswerSession
from serving.answers.views import PassageOut
from serving.api.errors import classify
from serving.api.schemas import AskResponse, UsageOut

T = TypeVar("T")


async def guarded(session: AnswerSession, step: Callable[[], Awaitable[T]]) -> T:
    """Run a step of the answer, auditing a failure before it propagates. Streams run their
    first step this way before they start, so bad input, unknown models and an unreachable
    store still get a proper status code instead of a stream."""
    try:
        return await step()
    except Exception as exc:
        await session.afail(f"error: {classify(exc)[1]}")
        raise


def usage_out(done: Completed) -> UsageOut:
    u = done.usage
    return UsageOut(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
    )


def passages(done: Completed, principal: Principal) -> list[PassageOut]:
    return PassageOut.numbered(done.answer.passages, scores=principal.admin)


def citations(done: Completed) -> list[dict[str, Any]]:
    return [asdict(c) for c in done.answer.citations]


def claims(done: Completed) -> list[dict[str, Any]]:
    return [asdict(c) for c in done.answer.claims]


def ask_response(
    session: AnswerSession, done: Completed, conversation_id: str, principal: Principal
) -> AskResponse:
    return AskResponse(
        answer=done.answer.text,
        answer_id=session.answer_id,
        citations=list(done.answer.citations),
        claims=list(done.answer.claims),
        passages=passages(done, principal),
        model=done.answer.model,
        conversation_id=conversation_id,
        abstained=done.abstained,
        usage=usage_out(done),
    )
