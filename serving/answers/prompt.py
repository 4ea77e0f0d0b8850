"""The prompt: instructions, numbered context blocks packed into the model's window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backends.generators import estimate_tokens
from core.types import Hit

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
PROMPT_MARGIN = 64  # tokens kept free for chat-template overhead


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
