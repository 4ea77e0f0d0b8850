"""BM25 sparse encoder: Qdrant's own tokenizer, stemmer and stop words (qdrant-edge-py).

The same analysis Qdrant's server-side ``qdrant/bm25`` inference uses; token ids
are stable hashes, so no vocabulary is stored. Documents get saturated term
frequencies; the collection's ``Modifier.IDF`` supplies the IDF at query time.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import ConfigError
from core.settings import SparseSettings
from core.types import SparseVector


class Bm25Encoder:
    """A :class:`core.protocols.SparseEncoder` on ``qdrant_edge.Bm25``."""

    def __init__(self, settings: SparseSettings) -> None:
        import qdrant_edge

        self._settings = settings
        try:
            self._bm25 = qdrant_edge.Bm25(
                qdrant_edge.Bm25Config(
                    k=settings.k1,
                    b=settings.b,
                    avg_len=settings.avg_len,
                    language=settings.language,
                )
            )
        except ValueError as exc:
            raise ConfigError(
                f"unknown BM25 language {settings.language!r} (ENCLAVE_SPARSE__LANGUAGE); "
                "use e.g. english, german, french"
            ) from exc

    @property
    def name(self) -> str:
        s = self._settings
        return f"bm25:{s.language}:k1={s.k1}:b={s.b}:avg_len={s.avg_len}"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [_convert(self._bm25.embed_document(text)) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        return _convert(self._bm25.embed_query(text))


def _convert(vector: object) -> SparseVector:
    indices = tuple(int(i) for i in vector.indices)  # type: ignore[attr-defined]
    values = tuple(float(v) for v in vector.values)  # type: ignore[attr-defined]
    return SparseVector(indices=indices, values=values)
