"""One audited answer, the same for every channel (``/v1/ask``, ``/v1/chat/completions``,
``enclave ask``): it runs the :class:`Answerer`, records the answer in the audit log
(status ``ok``, ``error: <type>`` or ``cancelled``, with what was written so far), keeps
the conversation's turn, and ends its place among the caller's answers in progress."""

from __future__ import annotations

import time
import weakref
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import anyio

from backends.sql.app import AppDatabase, AuditEntry
from core.errors import InputError
from core.logging import request_id_var
from core.types import Principal
from serving.answers.answerer import Answerer, AnswerEvent, Completed, Retrieved, Token


class AnswerSession:
    """One question's answer: iterate :meth:`next_event` (or :meth:`run_to_end`); the
    session audits itself when it completes, fails or is cancelled."""

    def __init__(
        self,
        answerer: Answerer,
        db: AppDatabase,
        *,
        key_id: str,
        principal: Principal,
        kind: str,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
        model: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        groups: Sequence[str] | None = None,
        top_k: int | None = None,
        max_question_chars: int = 4000,
        redact_audit: bool = False,
        acquire: Callable[[], Callable[[], None]] | None = None,
        on_done: Callable[[Completed], None] | None = None,
    ) -> None:
        """``acquire`` takes the caller's place among its answers in progress and gives
        the function that ends it (raising when there is none left); ``on_done`` receives
        the completed answer (metrics)."""
        if len(question) > max_question_chars:
            raise InputError(
                f"the question is {len(question)} characters; shorten it to "
                f"{max_question_chars} or fewer"
            )
        self.db = db
        self.key_id = key_id
        self.kind = kind
        self.question = question
        self.conversation_id = conversation_id
        self.redact_audit = redact_audit
        self.on_done = on_done
        self.started = time.perf_counter()
        self.release: Callable[[], None] = acquire() if acquire is not None else _nothing
        weakref.finalize(self, self.release)  # also when a stream that never started is dropped
        self._answerer = answerer
        self._principal = principal
        self._options: dict[str, Any] = {
            "history": history,
            "model": model,
            "filters": filters,
            "groups": groups,
            "top_k": top_k,
        }
        self._events: abc.Generator[AnswerEvent, None, None] | None = None
        self._aevents: abc.AsyncGenerator[AnswerEvent, None] | None = None
        self.pieces: list[str] = []
        self.retrieved: Retrieved | None = None
        self.answer_id = ""

    # -- synchronous (the command line) ---------------------------------------------------
    def next_event(self) -> AnswerEvent | None:
        if self._events is None:
            self._events = self._answerer.run(self.question, self._principal, **self._options)
        event = next(self._events, None)
        self._seen(event)
        if isinstance(event, Completed):
            self.finish(event)
        return event

    def run_to_end(self) -> Completed:
        while True:
            event = self.next_event()
            if isinstance(event, Completed):
                return event
            if event is None:  # pragma: no cover - the answerer always completes
                raise AssertionError("answer ended without completing")

    def fail(self, status: str) -> None:
        """Audit an answer that failed or was cancelled, with what was written so far."""
        self.release()
        if self._events is not None:
            self._events.close()
        self.audit(status, "".join(self.pieces), None)

    # -- asynchronous (the API: no thread held while the model writes) ----------------------
    async def anext_event(self) -> AnswerEvent | None:
        if self._aevents is None:
            self._aevents = self._answerer.arun(self.question, self._principal, **self._options)
        try:
            event: AnswerEvent | None = await self._aevents.__anext__()
        except StopAsyncIteration:
            event = None
        self._seen(event)
        if isinstance(event, Completed):
            await anyio.to_thread.run_sync(self.finish, event)
        return event

    async def arun_to_end(self) -> Completed:
        while True:
            event = await self.anext_event()
            if isinstance(event, Completed):
                return event
            if event is None:  # pragma: no cover - the answerer always completes
                raise AssertionError("answer ended without completing")

    async def afail(self, status: str) -> None:
        """:meth:`fail`, also when the request is being cancelled (shielded)."""
        with anyio.CancelScope(shield=True):
            self.release()
            if self._aevents is not None:
                await self._aevents.aclose()
            await anyio.to_thread.run_sync(self.audit, status, "".join(self.pieces), None)

    def _seen(self, event: AnswerEvent | None) -> None:
        """Keep what an event tells (the passages, the text so far)."""
        if isinstance(event, Retrieved):
            self.retrieved = event
        elif isinstance(event, Token):
            self.pieces.append(event.text)

    def finish(self, done: Completed) -> None:
        self.release()
        if self.on_done is not None:
            self.on_done(done)
        self.answer_id = self.audit("ok", done.answer.text, done)
        if self.conversation_id:
            self.db.append_turn(
                self.conversation_id,
                self.key_id,
                self.question,
                done.answer.text,
                answer_id=self.answer_id,
                citations=[asdict(c) for c in done.answer.citations],
            )

    def audit(self, status: str, answer: str, done: Completed | None) -> str:
        seen = self.retrieved
        passages = done.answer.passages if done else (seen.passages if seen else ())
        model = done.answer.model if done else (seen.model if seen else "")
        timings = done.timings if done else (seen.timings if seen else {})
        cited = dict.fromkeys(c.doc_id for c in done.answer.citations) if done else {}
        entry = AuditEntry(
            kind=self.kind,
            key_id=self.key_id,
            question=self.question,
            chunk_ids=tuple(h.chunk.id for h in passages),
            model=model,
            answer=answer,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            prompt_tokens=done.usage.prompt_tokens if done else 0,
            completion_tokens=done.usage.completion_tokens if done else len(self.pieces),
            status=status,
            request_id=request_id_var.get(),
            conversation_id=self.conversation_id,
            timings_ms={stage: seconds * 1000 for stage, seconds in timings.items()},
            cited_doc_ids=tuple(cited),
            abstained=done.abstained if done else False,
            claims=(
                (sum(c.supported for c in done.answer.claims), len(done.answer.claims))
                if done
                else None
            ),
        )
        return self.db.record(entry, redact_pii=self.redact_audit)


def _nothing() -> None:
    return None
