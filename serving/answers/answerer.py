"""Grounded answers: rewrite a follow-up, route to a model, retrieve, prompt, cite.

The order of an answer:

1. validate the question; with conversation history, have the small model rewrite
   the follow-up into a standalone query (fallback: previous question + follow-up,
   also when the small model is down or refuses, so a working large model still answers);
2. route: the requested model if the settings allow it, else a ``large`` model for
   complex questions (long, multi-part, follow-ups) and a ``small`` one otherwise;
3. retrieve under the caller's access scope. Nothing above the relevance floor:
   the answer says the caller's documents do not cover it, and no model is called;
4. pack numbered context blocks (title, page) into the model's window, leaving
   room for the answer, and stream the answer;
5. parse the ``[n]`` markers: a marker pointing to no block is dropped (from the
   text too); each citation carries a quote that exists verbatim in its chunk;
6. check every sentence against the blocks (``claims.py``): the span that supports it,
   or marked unsupported, whatever the markers say.
"""

from __future__ import annotations

import logging
import re
import time
from collections import abc
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial

import anyio

from backends.generators import estimate_tokens
from core.errors import InputError, LLMUnavailableError, ModelError
from core.protocols import Generator
from core.redact import redact
from core.settings import LLMSettings
from core.types import Answer, Hit, Principal, Usage
from retrieval.search import Retriever
from serving.answers.citations import extract_citations
from serving.answers.claims import verify_claims
from serving.answers.prompt import (
    NOT_COVERED,
    PROMPT_MARGIN,
    REWRITE_PROMPT,
    build_messages,
    pack,
)
from serving.answers.router import Router

logger = logging.getLogger(__name__)

_MAX_REWRITE_CHARS = 1000


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Retrieved:
    """Retrieval finished: the passages the model will see, and who will answer."""

    query: str
    passages: tuple[Hit, ...]
    model: str
    timings: dict[str, float] = field(default_factory=dict)  # the stages so far, seconds


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of the answer text as the model writes it."""

    text: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The answer is complete: cleaned text, citations, usage and timings."""

    answer: Answer
    usage: Usage
    abstained: bool
    query: str
    timings: dict[str, float] = field(default_factory=dict)


AnswerEvent = Retrieved | Token | Completed


def complete(
    generator: Generator,
    messages: Sequence[dict[str, str]],
    max_tokens: int,
    temperature: float = 0.0,
) -> str:
    """A generator's whole reply at once (for short internal tasks such as rewriting)."""
    return "".join(
        p for p in generator.stream(messages, max_tokens, temperature) if isinstance(p, str)
    )


# -- the answerer --------------------------------------------------------------------------
async def acomplete(
    generator: Generator,
    messages: Sequence[dict[str, str]],
    max_tokens: int,
    temperature: float = 0.0,
) -> str:
    """:func:`complete` without holding a thread."""
    pieces: list[str] = []
    stream = generator.astream(messages, max_tokens, temperature)
    try:
        async for piece in stream:
            if isinstance(piece, str):
                pieces.append(piece)
    finally:
        await stream.aclose()
    return "".join(pieces)


@dataclass(slots=True)
class _Turn:
    """One answer under way: what it was asked, what the model is given, what it wrote."""

    text: str
    query: str
    generator: Generator
    history: list[tuple[str, str]]
    timings: dict[str, float]
    started: float
    blocks: list[Hit] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    generate_started: float = 0.0

    def retrieved(self) -> Retrieved:
        return Retrieved(self.query, tuple(self.blocks), self.generator.name, dict(self.timings))

    def take(self, piece: str | Usage) -> Token | None:
        """A piece from the model: text becomes a Token, the usage is kept."""
        if isinstance(piece, Usage):
            self.usage = piece
            return None
        if not self.pieces:
            self.timings["first_token"] = time.perf_counter() - self.started
        self.pieces.append(piece)
        return Token(piece)

    def completed(self, support_threshold: float) -> Completed:
        self.timings["generate"] = time.perf_counter() - self.generate_started
        cleaned, citations = extract_citations("".join(self.pieces), self.blocks)
        answer = Answer(
            text=cleaned,
            citations=citations,
            passages=tuple(self.blocks),
            model=self.generator.name,
            claims=verify_claims(cleaned, self.blocks, support_threshold=support_threshold),
        )
        return Completed(
            answer, self.usage, abstained=False, query=self.query, timings=self.timings
        )

    def not_covered(self) -> list[AnswerEvent]:
        answer = Answer(text=NOT_COVERED, citations=(), passages=(), model=self.generator.name)
        done = Completed(
            answer, Usage(0, 0), abstained=True, query=self.query, timings=self.timings
        )
        return [self.retrieved(), done]


class Answerer:
    """Answers questions for callers; one instance serves many requests. ``run`` for the
    command line and evaluation, ``arun`` for the API (no thread held while the model
    writes)."""

    def __init__(self, retriever: Retriever, router: Router, settings: LLMSettings) -> None:
        self.retriever = retriever
        self.router = router
        self._settings = settings

    def run(
        self,
        question: str,
        principal: Principal,
        *,
        history: Sequence[tuple[str, str]] = (),
        model: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        groups: Sequence[str] | None = None,
        top_k: int | None = None,
    ) -> abc.Generator[AnswerEvent, None, None]:
        """Stream the answer as events: ``Retrieved``, ``Token``s, then ``Completed``.

        Closing the iterator early stops the generation.
        """
        turn = self._begin(question, history, model)
        if turn.history:
            turn.query = self.rewrite(turn.text, turn.history)
            turn.timings["rewrite"] = time.perf_counter() - turn.started
        hits = self.retriever.search(
            turn.query, principal, top_k=top_k, filters=filters, groups=groups, timings=turn.timings
        )
        if not hits:
            yield from turn.not_covered()
            return
        self._prompt(turn, hits)
        yield turn.retrieved()
        turn.generate_started = time.perf_counter()
        s = self._settings
        with closing(
            turn.generator.stream(turn.messages, s.max_answer_tokens, s.temperature)
        ) as out:
            for piece in out:
                if (token := turn.take(piece)) is not None:
                    yield token
        yield turn.completed(s.support_threshold)

    async def arun(
        self,
        question: str,
        principal: Principal,
        *,
        history: Sequence[tuple[str, str]] = (),
        model: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        groups: Sequence[str] | None = None,
        top_k: int | None = None,
    ) -> abc.AsyncGenerator[AnswerEvent, None]:
        """:meth:`run` without holding a thread: retrieval (short, CPU-bound) runs in a
        worker thread, the model's answer streams asynchronously."""
        turn = self._begin(question, history, model)
        if turn.history:
            turn.query = await self.arewrite(turn.text, turn.history)
            turn.timings["rewrite"] = time.perf_counter() - turn.started
        hits = await anyio.to_thread.run_sync(
            partial(
                self.retriever.search,
                turn.query,
                principal,
                top_k=top_k,
                filters=filters,
                groups=groups,
                timings=turn.timings,
            )
        )
        if not hits:
            for event in turn.not_covered():
                yield event
            return
        self._prompt(turn, hits)
        yield turn.retrieved()
        turn.generate_started = time.perf_counter()
        s = self._settings
        out = turn.generator.astream(turn.messages, s.max_answer_tokens, s.temperature)
        try:
            async for piece in out:
                if (token := turn.take(piece)) is not None:
                    yield token
        finally:
            await out.aclose()
        yield turn.completed(s.support_threshold)

    def answer(self, question: str, principal: Principal, **kwargs: object) -> Completed:
        """The whole answer at once."""
        for event in self.run(question, principal, **kwargs):  # type: ignore[arg-type]
            if isinstance(event, Completed):
                return event
        raise AssertionError("an answer always completes")  # pragma: no cover

    def _begin(self, question: str, history: Sequence[tuple[str, str]], model: str | None) -> _Turn:
        """Check the question, keep the latest turns, choose the model."""
        text = question.strip()
        if not text:
            raise InputError("the question is empty; type a question")
        turns = self._settings.history_turns
        kept = list(history)[-turns:] if turns else []
        generator = self.router.choose(text, bool(kept), model)
        return _Turn(text, text, generator, kept, {}, time.perf_counter())

    def _prompt(self, turn: _Turn, hits: Sequence[Hit]) -> None:
        """Pack the hits into the model's window and write the messages."""
        frame = build_messages(turn.text, (), turn.history)  # the prompt without passages
        budget = (
            turn.generator.context_window
            - self._settings.max_answer_tokens
            - sum(estimate_tokens(m["content"]) for m in frame)
            - PROMPT_MARGIN
        )
        turn.blocks = pack(hits, budget)
        messages = build_messages(turn.text, turn.blocks, turn.history)
        if self._settings.redact_prompts:
            messages = [{**m, "content": redact(m["content"])} for m in messages]
        turn.messages = messages

    def rewrite(self, question: str, history: Sequence[tuple[str, str]]) -> str:
        """A standalone query for a follow-up (by the small model; a plain fallback when
        its output is unusable)."""
        messages, fallback = _rewrite_request(question, history)
        try:
            output = complete(self.router.small(), messages, 64)
        except (LLMUnavailableError, ModelError) as exc:  # the answering model may still work
            logger.warning("follow-up rewrite failed (%s); using the fallback", exc)
            return fallback
        return _rewritten(output, fallback)

    async def arewrite(self, question: str, history: Sequence[tuple[str, str]]) -> str:
        """:meth:`rewrite` without holding a thread."""
        messages, fallback = _rewrite_request(question, history)
        try:
            output = await acomplete(self.router.small(), messages, 64)
        except (LLMUnavailableError, ModelError) as exc:
            logger.warning("follow-up rewrite failed (%s); using the fallback", exc)
            return fallback
        return _rewritten(output, fallback)


def _rewrite_request(
    question: str, history: Sequence[tuple[str, str]]
) -> tuple[list[dict[str, str]], str]:
    """The messages asking for a standalone query, and the fallback query."""
    lines = []
    for asked, answered in history[-3:]:
        lines.append(f"User: {asked}")
        lines.append(f"Assistant: {answered[:300]}")
    prompt = "\n".join(lines) + f"\n\nFollow-up question: {question}\nStandalone query:"
    messages = [
        {"role": "system", "content": REWRITE_PROMPT},
        {"role": "user", "content": prompt},
    ]
    return messages, f"{history[-1][0]} {question}"


def _rewritten(output: str, fallback: str) -> str:
    rewritten = output.strip().splitlines()
    query = rewritten[0].strip().strip('"').strip() if rewritten else ""
    query = re.sub(r"^(standalone query|query)\s*:\s*", "", query, flags=re.IGNORECASE)
    if len(query) < 3 or len(query) > _MAX_REWRITE_CHARS:
        logger.info("follow-up rewrite unusable (%r); using the fallback", query)
        return fallback
    return query
