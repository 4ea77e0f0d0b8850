"""What the two Qdrant engines share: vector names, collection metadata, the model
check, the message for a store held by another process, and filter clauses.

``backends/qdrant_store.py`` (qdrant-client: local mode or a server) and
``backends/edge_store.py`` (Qdrant Edge, in-process) store the same payload under the
same ids and names, so a knowledge base moves between them without re-embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import CollectionMismatchError, StoreError, StoreLockedError
from core.types import CollectionSpec, SearchFilter

DENSE = "dense"
SPARSE = "bm25"
SCHEMA_VERSION = 1
KEYWORD_FIELDS = ("doc_id", "source", "groups", "tags", "mime_type", "content_hash")


def collection_metadata(spec: CollectionSpec) -> dict[str, Any]:
    """What a collection records about the models that filled it."""
    return {
        "embedder": spec.embedder,
        "dense_dim": spec.dense_dim,
        "distance": spec.distance,
        "sparse_encoder": spec.sparse_encoder,
        "schema": SCHEMA_VERSION,
    }


def check_collection(
    collection: str,
    spec: CollectionSpec,
    *,
    size: int | None,
    distance: str | None,
    recorded_embedder: str | None,
) -> None:
    """Raise ``CollectionMismatchError`` when an existing collection does not fit ``spec``.

    ``size``/``distance`` describe its dense vector (``None``: it has none);
    ``distance`` is lower-case (``cosine``, ``dot``, ``euclid``).
    """
    problems = []
    if size is None:
        problems.append(f"it has no '{DENSE}' vector")
    else:
        if size != spec.dense_dim:
            problems.append(
                f"its vectors have {size} dimensions, the embedder gives {spec.dense_dim}"
            )
        if distance != spec.distance:
            problems.append(f"its distance is {distance}, expected {spec.distance}")
    if recorded_embedder not in (None, spec.embedder):
        problems.append(
            f"it was built with embedder {recorded_embedder!r}, the settings name {spec.embedder!r}"
        )
    if problems:
        raise CollectionMismatchError(
            f"collection '{collection}' does not match the configured models: "
            + "; ".join(problems)
            + ". To move to the configured embedder, run `enclave reindex` (it builds a new "
            "collection and switches when done); or set ENCLAVE_EMBEDDER__MODEL back to "
            + (repr(recorded_embedder) if recorded_embedder else "the model it was built with")
            + "."
        )


def store_held(location: object) -> StoreLockedError:
    """The error for an embedded store another process (or store object) holds."""
    return StoreLockedError(
        f"the embedded store at {location} is in use by another Enclave process "
        "(`enclave serve` holds it while it runs). Ask through the running server "
        "(set ENCLAVE_API_URL and ENCLAVE_API_KEY for `enclave ask`, or use the "
        "API), stop that process, or use a Qdrant server (ENCLAVE_STORE__URL)"
    )


@dataclass(frozen=True, slots=True)
class Clauses:
    """A ``SearchFilter`` as engine-neutral conditions, all of which must hold."""

    any_of: tuple[tuple[str, tuple[str, ...]], ...]  # (payload key, values): one must match
    modified: tuple[float | None, float | None] | None  # (gte, lte) on modified_at

    @classmethod
    def of(cls, spec: SearchFilter) -> Clauses:
        any_of: list[tuple[str, tuple[str, ...]]] = []
        if spec.groups is not None:
            any_of.append(("groups", spec.groups))
        for key, values in (
            ("doc_id", spec.doc_ids),
            ("source", spec.sources),
            ("tags", spec.tags),
            ("mime_type", spec.mime_types),
        ):
            if values:
                any_of.append((key, values))
        modified = None
        if spec.modified_after is not None or spec.modified_before is not None:
            modified = (spec.modified_after, spec.modified_before)
        return cls(tuple(any_of), modified)


class TranslateErrors:
    """A context manager turning an engine's errors (``kinds``) into ``StoreError``
    prefixed with ``message``; a ``StoreError`` passes through unchanged."""

    def __init__(self, message: str, kinds: tuple[type[Exception], ...]) -> None:
        self._message = message
        self._kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, self._kinds):
            return
        raise StoreError(f"{self._message}: {exc}") from exc
