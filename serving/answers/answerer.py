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
   text too); each citation carries a quote that exists verbatim in its chunk.
"""

from __future__ import annotations

import logging
import re
import time
from collections import abc
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from backends.generators import estimate_tokens
from core.errors import InputError, LLMUnavailableError, ModelError
from core.protocols import Generator
from core.redact import redact
from core.settings import LLMSettings
from core.types import Answer, Hit, Principal, Usage
from retrieval.search import Retriever
from serving.answers.citations import extract_citations
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
class Answerer:
    """Answers questions for callers; one instance serves many requests."""

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
        text = question.strip()
        if not text:
            raise InputError("the question is empty; type a question")
        history = (
            list(history)[-self._settings.history_turns :] if self._settings.history_turns else []
        )
        generator = self.router.choose(text, bool(history), model)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = self.rewrite(text, history) if history else text
        if history:
            timings["rewrite"] = time.perf_counter() - started
        hits = self.retriever.search(
            query, principal, top_k=top_k, filters=filters, groups=groups, timings=timings
        )
        if not hits:
            yield Retrieved(query, (), generator.name, dict(timings))
            answer = Answer(text=NOT_COVERED, citations=(), passages=(), model=generator.name)
            yield Completed(answer, Usage(0, 0), abstained=True, query=query, timings=timings)
            return
        frame = build_messages(text, (), history)  # the prompt without passages
        budget = (
            generator.context_window
            - self._settings.max_answer_tokens
            - sum(estimate_tokens(m["content"]) for m in frame)
            - PROMPT_MARGIN
        )
        blocks = pack(hits, budget)
        yield Retrieved(query, tuple(blocks), generator.name, dict(timings))
        messages = build_messages(text, blocks, history)
        if self._settings.redact_prompts:
            messages = [{**m, "content": redact(m["content"])} for m in messages]
        pieces: list[str] = []
        usage = Usage(0, 0)
        generate_started = time.perf_counter()
        stream = generator.stream(
            messages, self._settings.max_answer_tokens, self._settings.temperature
        )
        with closing(stream):
            for piece in stream:
                if isinstance(piece, Usage):
                    usage = piece
                    continue
                if not pieces:
                    timings["first_token"] = time.perf_counter() - started
                pieces.append(piece)
                yield Token(piece)
        timings["generate"] = time.perf_counter() - generate_started
        cleaned, citations = extract_citations("".join(pieces), blocks)
        answer = Answer(
            text=cleaned, citations=citations, passages=tuple(blocks), model=generator.name
        )
        yield Completed(answer, usage, abstained=False, query=query, timings=timings)

    def answer(self, question: str, principal: Principal, **kwargs: object) -> Completed:
        """The whole answer at once."""
        for event in self.run(question, principal, **kwargs):  # type: ignore[arg-type]
            if isinstance(event, Completed):
                return event
        raise AssertionError("an answer always completes")  # pragma: no cover

    def rewrite(self, question: str, history: Sequence[tuple[str, str]]) -> str:
        """A standalone query for a follow-up (by the small model; a plain fallback when
        its output is unusable)."""
        lines = []
        for asked, answered in history[-3:]:
            lines.append(f"User: {asked}")
            lines.append(f"Assistant: {answered[:300]}")
        prompt = "\n".join(lines) + f"\n\nFollow-up question: {question}\nStandalone query:"
        fallback = f"{history[-1][0]} {question}"
        messages = [
            {"role": "system", "content": REWRITE_PROMPT},
            {"role": "user", "content": prompt},
        ]
        try:
            rewritten = complete(self.router.small(), messages, 64).strip().splitlines()
        except (LLMUnavailableError, ModelError) as exc:  # the answering model may still work
            logger.warning("follow-up rewrite failed (%s); using the fallback", exc)
            return fallback
        query = rewritten[0].strip().strip('"').strip() if rewritten else ""
        query = re.sub(r"^(standalone query|query)\s*:\s*", "", query, flags=re.IGNORECASE)
        if len(query) < 3 or len(query) > _MAX_REWRITE_CHARS:
            logger.info("follow-up rewrite unusable (%r); using the fallback", query)
            return fallback
        return query
