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
from dataclasses import dataclass, field, replace
from pathlib import Path

from backends.generators import estimate_tokens
from core.errors import InputError, LLMUnavailableError, ModelError
from core.protocols import Generator
from core.redact import redact
from core.settings import LLMSettings
from core.types import Answer, Citation, Hit, Principal, Usage
from retrieval.search import Retriever

logger = logging.getLogger(__name__)

NOT_COVERED = (
    "The documents you have access to do not cover this question, so I cannot answer it from them."
)
SYSTEM_PROMPT = (
    "You are Enclave. Answer the question using only the numbered context passages below. "
    "After each sentence, cite the passage it comes from in square brackets, e.g. [1]. If the "
    "context does not contain the answer, say that the documents do not cover it. Never use "
    "outside knowledge."
)
REWRITE_PROMPT = (
    "Rewrite the user's follow-up question as one standalone search query that makes sense "
    "without the conversation. Reply with the query only."
)
CITATION_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)", re.MULTILINE)
_WORD = re.compile(r"\w+")
_COMPLEX = re.compile(
    r"\b(compare|comparison|differences?|versus|vs\.?|pros and cons|step[- ]by[- ]step|"
    r"explain why|trade-?offs?|and also|as well as)\b",
    re.IGNORECASE,
)
_PROMPT_MARGIN = 64  # tokens kept free for chat-template overhead
_QUOTE_CHARS = 300
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


# -- routing -------------------------------------------------------------------------------
def is_complex(question: str, has_history: bool, complex_chars: int) -> bool:
    """Long, multi-part or comparative questions, and follow-ups, go to a large model."""
    q = question.strip()
    return (
        has_history or len(q) > complex_chars or q.count("?") > 1 or _COMPLEX.search(q) is not None
    )


class Router:
    """Picks the model: the one requested (if allowed), else by the question's complexity."""

    def __init__(self, generators: Mapping[str, Generator], settings: LLMSettings) -> None:
        if not generators:
            raise InputError("no LLM is configured (ENCLAVE_LLM__MODELS)")
        self._generators = dict(generators)
        self._settings = settings
        names = list(generators)
        self._small = next((n for n in names if generators[n].role == "small"), names[0])
        self._large = next((n for n in names if generators[n].role == "large"), self._small)
        self.default = settings.default_model or self._small

    @property
    def names(self) -> list[str]:
        return list(self._generators)

    def get(self, name: str) -> Generator:
        return self._generators[name]

    def small(self) -> Generator:
        return self._generators[self._small]

    def choose(self, question: str, has_history: bool, requested: str | None) -> Generator:
        if requested:
            if requested not in self._generators:
                raise InputError(
                    f"unknown model {requested!r}; the models you can use are "
                    f"{', '.join(self._generators)}"
                )
            return self._generators[requested]
        if is_complex(question, has_history, self._settings.complex_chars):
            return self._generators[self._large]
        return self._generators[self.default]


# -- prompting -----------------------------------------------------------------------------
def block_header(n: int, hit: Hit) -> str:
    c = hit.chunk
    where = f", page {c.page}" if c.page else ""
    return f"[{n}] {c.title or Path(c.source).name}{where}"


def block_text(n: int, hit: Hit) -> str:
    return f"{block_header(n, hit)}\n{hit.chunk.text.strip()}"


def pack(hits: Sequence[Hit], budget_tokens: int) -> list[Hit]:
    """The best hits whose blocks fit ``budget_tokens``, in rank order (at least one,
    cut to fit when even the first is too long)."""
    packed: list[Hit] = []
    used = 0
    for hit in hits:
        cost = estimate_tokens(block_text(len(packed) + 1, hit)) + 2
        if used + cost > budget_tokens:
            continue
        packed.append(hit)
        used += cost
    if not packed and hits and budget_tokens > 32:
        first = hits[0]
        keep = max(0, (budget_tokens - 32) * 3)
        cut = first.chunk.text[:keep]
        packed.append(replace(first, chunk=replace(first.chunk, text=cut)))
    return packed


def build_messages(
    question: str, blocks: Sequence[Hit], history: Sequence[tuple[str, str]]
) -> list[dict[str, str]]:
    """System message: the instructions and the numbered passages; then the conversation
    so far; then the question (small models follow this shape best, measured on the
    sample knowledge base)."""
    context = "\n\n".join(block_text(n, hit) for n, hit in enumerate(blocks, 1))
    messages = [{"role": "system", "content": f"{SYSTEM_PROMPT}\n\nContext:\n{context}"}]
    for asked, answered in history:
        messages.append({"role": "user", "content": asked})
        messages.append({"role": "assistant", "content": answered})
    messages.append({"role": "user", "content": question})
    return messages


# -- citations -----------------------------------------------------------------------------
def extract_citations(text: str, blocks: Sequence[Hit]) -> tuple[str, tuple[Citation, ...]]:
    """The answer without markers that point to no block, and one citation per cited block
    (in order of first mention) with a verbatim quote from the block's chunk."""
    order: list[int] = []
    context: dict[int, list[str]] = {}
    sentences = _SENTENCE.findall(text) or [text]
    for sentence in sentences:
        for match in CITATION_MARKER.finditer(sentence):
            for raw in match.group(1).split(","):
                n = int(raw)
                if 1 <= n <= len(blocks):
                    if n not in context:
                        order.append(n)
                    context.setdefault(n, []).append(CITATION_MARKER.sub("", sentence))

    def keep_valid(match: re.Match[str]) -> str:
        valid = [r.strip() for r in match.group(1).split(",") if 1 <= int(r) <= len(blocks)]
        return f"[{', '.join(valid)}]" if valid else ""

    cleaned = CITATION_MARKER.sub(keep_valid, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned).strip()
    citations = []
    for n in order:
        chunk = blocks[n - 1].chunk
        citations.append(
            Citation(
                n=n,
                doc_id=chunk.doc_id,
                source=chunk.source,
                title=chunk.title,
                page=chunk.page,
                quote=best_quote(chunk.text, " ".join(context[n])),
            )
        )
    return cleaned, tuple(citations)


def best_quote(chunk_text: str, claim: str) -> str:
    """The sentence of ``chunk_text`` sharing most words with ``claim``, verbatim
    (cut at a word boundary to a few hundred characters)."""
    claim_words = {w.lower() for w in _WORD.findall(claim) if len(w) > 2}
    best, best_score = "", -1.0
    for match in _SENTENCE.finditer(chunk_text):
        sentence = match.group(0).strip()
        words = {w.lower() for w in _WORD.findall(sentence) if len(w) > 2}
        if not words:
            continue
        score = len(words & claim_words) + 0.001 * min(len(words), 30)
        if score > best_score:
            best, best_score = sentence, score
    best = best or chunk_text.strip()
    if len(best) > _QUOTE_CHARS:
        cut = best[:_QUOTE_CHARS]
        best = cut[: cut.rfind(" ")] if " " in cut else cut
    return best


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
            - _PROMPT_MARGIN
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
