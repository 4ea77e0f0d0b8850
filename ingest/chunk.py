"""Structure-aware chunking with LangChain's splitters, sized in embedder tokens.

Chunks never cross a section boundary and carry their heading path. Each chunk,
with its title/heading header, fits the embedder's window. Tables are split by
rows, each part repeating the header row so it stays readable on its own.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from core.types import Chunk, Document
from ingest.parse import Block, ParsedDocument

_NAMESPACE = uuid.UUID("5b7f1e0c-93a4-4f8e-9d6a-2f4f0e3c9a11")
_SPECIAL_TOKENS = 2  # [CLS] and [SEP] for BERT-style encoders
_MIN_BUDGET = 32


def chunk_id(doc_id: str, content_hash: str, index: int) -> str:
    """Deterministic point id: the same document content always gives the same ids."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{content_hash}:{index}"))


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]


class Chunker:
    """Splits a :class:`ParsedDocument` into :class:`Chunk` objects."""

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        max_tokens: int,
        chunk_tokens: int,
        chunk_overlap: int,
    ) -> None:
        # LangChain's splitter measures each piece two or three times (split, merge,
        # overlap); a per-chunker cache makes that one tokenizer call per piece.
        self._count = functools.lru_cache(maxsize=16384)(count_tokens)
        self._window = max_tokens - _SPECIAL_TOKENS
        self._chunk_tokens = chunk_tokens
        self._overlap = chunk_overlap

    def chunk(self, parsed: ParsedDocument, document: Document) -> list[Chunk]:
        pieces: list[_Piece] = []
        for section in parsed.sections:
            header = " > ".join(h for h in (document.title, *section.heading_path) if h)
            budget = max(
                _MIN_BUDGET, min(self._chunk_tokens, self._window - self._count(header) - 1)
            )
            run: list[Block] = []
            for block in [*section.blocks, None]:
                if block is not None and not block.is_table:
                    run.append(block)
                    continue
                if run:
                    pieces.extend(self._split_text(run, budget, section.heading_path))
                    run = []
                if block is not None:
                    pieces.extend(self._split_table(block, budget, section.heading_path))
        return [
            Chunk(
                id=chunk_id(document.doc_id, document.content_hash, index),
                doc_id=document.doc_id,
                source=document.source,
                title=document.title,
                text=piece.text,
                chunk_index=index,
                pages=piece.pages,
                heading_path=piece.heading_path,
                content_hash=document.content_hash,
                modified_at=document.modified_at,
                mime_type=document.mime_type,
                groups=document.groups,
                tags=document.tags,
            )
            for index, piece in enumerate(p for p in pieces if p.text.strip())
        ]

    def _split_text(
        self, blocks: list[Block], budget: int, heading_path: tuple[str, ...]
    ) -> list[_Piece]:
        separator = "\n\n"
        text = separator.join(b.text for b in blocks)
        spans: list[tuple[int, int, int | None]] = []  # start, end, page of each block
        offset = 0
        for block in blocks:
            spans.append((offset, offset + len(block.text), block.page))
            offset += len(block.text) + len(separator)
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=budget,
            chunk_overlap=min(self._overlap, budget // 2),
            length_function=self._count,
            separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
            keep_separator="end",
            add_start_index=True,
            strip_whitespace=True,
        )
        pieces = []
        for doc in splitter.create_documents([text]):
            start = int(doc.metadata.get("start_index", 0))
            end = start + len(doc.page_content)
            pages = sorted(
                {p for s, e, p in spans if p is not None and s < max(end, start + 1) and e > start}
            )
            pieces.append(_Piece(doc.page_content.strip(), tuple(pages), heading_path))
        return pieces

    def _split_table(
        self, block: Block, budget: int, heading_path: tuple[str, ...]
    ) -> list[_Piece]:
        rows = [r for r in block.text.split("\n") if r.strip()]
        if not rows:
            return []
        pages = (block.page,) if block.page is not None else ()
        header, body = rows[0], rows[1:]
        header_tokens = self._count(header) + 1
        parts: list[list[str]] = []
        current: list[str] = []
        used = header_tokens
        for row in body:
            cost = self._count(row) + 1
            if current and used + cost > budget:
                parts.append(current)
                current, used = [], header_tokens
            current.append(row)
            used += cost
        if current or not parts:
            parts.append(current)
        pieces = []
        for part in parts:
            lines = [header, *part]
            text = "\n".join(lines)
            if self._count(text) > budget:  # a single huge row: fall back to text splitting
                pieces.extend(self._split_text([Block(text, block.page)], budget, heading_path))
            else:
                pieces.append(_Piece(text, pages, heading_path))
        return pieces
