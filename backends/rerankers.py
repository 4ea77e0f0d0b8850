"""Cross-encoder reranking on sentence-transformers (optional: no weights are bundled)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from backends.embedders import QUIET_HF
from core.errors import ModelError
from core.settings import RerankerSettings
from core.types import Hit

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)


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
        for key, value in QUIET_HF.items():
            os.environ.setdefault(key, value)
        location = settings.model
        if Path(location).expanduser().is_dir():
            location = str(Path(location).expanduser())
        started = time.perf_counter()
        try:
            from sentence_transformers import CrossEncoder

            self._model: CrossEncoder = CrossEncoder(location, device=settings.device)
        except Exception as exc:  # vendor errors vary: OSError, HF errors, torch errors
            raise ModelError(
                f"cannot load reranker {settings.model!r} ({exc.__class__.__name__}: {exc}). "
                "Set ENCLAVE_RERANKER__MODEL to a local CrossEncoder folder, or unset it to "
                "search without reranking."
            ) from exc
        logger.info("loaded reranker %s in %.2fs", settings.model, time.perf_counter() - started)

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
