"""Citations: the ``[n]`` markers of an answer, checked against its blocks, each with a
verbatim quote from the cited chunk."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.types import Citation, Hit

CITATION_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# a sentence ends at . ! or ? followed by white space (not inside "2.08" or "e.g.x")
SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$))+(?:[.!?]+|$)", re.MULTILINE)
_WORD = re.compile(r"\w+")
_QUOTE_CHARS = 300


def extract_citations(text: str, blocks: Sequence[Hit]) -> tuple[str, tuple[Citation, ...]]:
    """The answer without markers that point to no block, and one citation per cited block
    (in order of first mention) with a verbatim quote from the block's chunk."""
    order: list[int] = []
    context: dict[int, list[str]] = {}
    sentences = SENTENCE.findall(text) or [text]
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
    for match in SENTENCE.finditer(chunk_text):
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
