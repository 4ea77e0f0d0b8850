"""Claims: each sentence of an answer, checked by the system against the passages the
model was given, whatever the model's ``[n]`` markers say.

A sentence is *supported* when one passage span (a sentence, or two adjacent ones)
contains most of its content words (``support_threshold``, default 0.6) and every
number it states: the lexical evidence that the passage says it. Each claim carries the
span that supports it (block, chunk, page, character offsets in the chunk, the quote
verbatim) or is marked unsupported; a cited block is preferred when it supports the
sentence as well as another. Sentences with fewer than two content words ("Yes.",
"See below.") are not claims.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.types import Claim, Hit
from serving.answers.citations import CITATION_MARKER, SENTENCE

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([.,;:!?])")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")
# the words that carry no content of their own (English; a sentence in another
# language simply keeps all its words, which makes support stricter, not looser)
_STOP_WORDS = """
a about above after again all also am an and any are as at be because been before
being between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its
itself just me more most my no nor not now of off on once only or other our out over
own same she should so some such than that the their them then there these they this
those through to too under until up very was we were what when where which while who
whom why will with would you your yours according document documents passage
passages context
"""
_STOP = frozenset(_STOP_WORDS.split())
_MIN_CONTENT_WORDS = 2


@dataclass(frozen=True, slots=True)
class _Span:
    block: int  # 1-based block number
    start: int  # offsets in the chunk's text
    end: int
    words: frozenset[str]
    numbers: frozenset[str]


def content_words(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(content words, numbers) of ``text``: lower-cased, a plural ``s`` dropped."""
    words: set[str] = set()
    numbers: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if _NUMBER.match(token):
            numbers.add(token)
            words.add(token)
        elif token not in _STOP and len(token) > 1:
            words.add(token[:-1] if len(token) > 3 and token.endswith("s") else token)
    return frozenset(words), frozenset(numbers)


def verify_claims(
    answer: str, blocks: Sequence[Hit], *, support_threshold: float = 0.6
) -> tuple[Claim, ...]:
    """The claims of ``answer`` (its text with ``[n]`` markers), each with its supporting
    span in ``blocks`` or marked unsupported. Offsets are in ``answer``."""
    spans = [span for n, hit in enumerate(blocks, 1) for span in _spans(n, hit.chunk.text)]
    claims: list[Claim] = []
    for match in SENTENCE.finditer(answer):
        raw = match.group(0)
        text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", CITATION_MARKER.sub("", raw)).strip()
        words, numbers = content_words(text)
        if len(words) < _MIN_CONTENT_WORDS:
            continue
        cited = {int(n) for m in CITATION_MARKER.finditer(raw) for n in m.group(1).split(",")}
        best, coverage = _best_span(spans, words, numbers, cited)
        start = match.start() + (len(raw) - len(raw.lstrip()))
        end = match.start() + len(raw.rstrip())
        if best is None or coverage < support_threshold:
            claims.append(Claim(text=text, start=start, end=end, supported=False, score=coverage))
            continue
        chunk = blocks[best.block - 1].chunk
        claims.append(
            Claim(
                text=text,
                start=start,
                end=end,
                supported=True,
                score=round(coverage, 3),
                n=best.block,
                chunk_id=chunk.id,
                doc_id=chunk.doc_id,
                page=chunk.page,
                quote=chunk.text[best.start : best.end],
                quote_start=best.start,
                quote_end=best.end,
            )
        )
    return tuple(claims)


def _spans(n: int, text: str) -> list[_Span]:
    """Each sentence of a chunk, and each pair of adjacent sentences."""
    sentences = [
        (
            m.start() + len(m.group(0)) - len(m.group(0).lstrip()),
            m.start() + len(m.group(0).rstrip()),
        )
        for m in SENTENCE.finditer(text)
        if m.group(0).strip()
    ]
    spans = []
    for i, (start, end) in enumerate(sentences):
        for last in (end, sentences[i + 1][1] if i + 1 < len(sentences) else None):
            if last is None:
                continue
            words, numbers = content_words(text[start:last])
            if words:
                spans.append(_Span(n, start, last, words, numbers))
    return spans


def _best_span(
    spans: Sequence[_Span], words: frozenset[str], numbers: frozenset[str], cited: set[int]
) -> tuple[_Span | None, float]:
    """The span holding most of the claim's words and all its numbers (shorter spans
    and cited blocks win ties)."""
    best: _Span | None = None
    best_key = (-1.0, False, 0)
    for span in spans:
        if not numbers <= span.numbers:
            continue
        coverage = len(words & span.words) / len(words)
        key = (coverage, span.block in cited, -(span.end - span.start))
        if key > best_key:
            best, best_key = span, key
    return best, max(best_key[0], 0.0)
