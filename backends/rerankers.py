"""Cross-encoder reranking on sentence-transformers (optional: no weights are bundled)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from backends.embedders import load_model
from core.errors import ModelError
from core.settings import RerankerSettings
from core.types import Hit

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


class CrossEncoderReranker:
    """A :class:`core.protocols.Reranker` on a sentence-transformers ``CrossEncoder``.

    The model reads (query, chunk text with its title and headings) pairs; its score
    replaces the hit's score. Scores are the model's raw outputs (logits for the
    ms-marco family): comparable within one query, not across models.
    """

    def __init__(self, settings: RerankerSettings) -> None:
        if not settings.model:
            raise ModelError("no reranker model is configured (ENCLAVE_RERANKER__MODEL)")
        self._settings = settings
        self._model: CrossEncoder = load_model(
            "CrossEncoder",
            settings.model,
            settings.device,
            "reranker",
            "Set ENCLAVE_RERANKER__MODEL to a local CrossEncoder folder, or unset it to search "
            "without reranking.",
        )

    @property
    def name(self) -> str:
        return str(self._settings.model)

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self._model.predict(
            [(query, h.chunk.embedding_text) for h in hits],
            batch_size=self._settings.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        rescored = [replace(h, score=float(s)) for h, s in zip(hits, scores.tolist(), strict=True)]
        return sorted(rescored, key=lambda h: h.score, reverse=True)
