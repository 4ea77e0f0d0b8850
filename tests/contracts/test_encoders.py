"""Embedder and SparseEncoder contracts on the real bundled models."""

from __future__ import annotations

import math

import pytest

from backends.sparse import Bm25Encoder
from core.errors import ConfigError
from core.protocols import Embedder, SparseEncoder
from core.settings import SparseSettings

pytestmark = pytest.mark.slow


def test_embedder_gives_normalised_vectors_of_its_dimension(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 384
    assert embedder.max_tokens == 256
    vectors = embedder.embed_documents(["annual leave policy", "password rules", ""])
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4)
    assert embedder.embed_documents([]) == []


def test_embedder_ranks_related_text_higher(embedder: Embedder) -> None:
    q = embedder.embed_query("How many holiday days do I get?")
    leave, password = embedder.embed_documents(
        ["Employees receive 25 days of paid annual leave.", "Passwords need 14 characters."]
    )
    assert sum(a * b for a, b in zip(q, leave, strict=True)) > sum(
        a * b for a, b in zip(q, password, strict=True)
    )


def test_token_counts_match_the_model_tokenizer(embedder: Embedder) -> None:
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("") == 0


def test_sparse_ids_are_stable_across_instances_and_stemmed() -> None:
    a, b = Bm25Encoder(SparseSettings()), Bm25Encoder(SparseSettings())
    assert isinstance(a, SparseEncoder)
    doc = a.encode_documents(["Employees accrue annual leave"])[0]
    assert doc == b.encode_documents(["Employees accrue annual leave"])[0]
    query = a.encode_query("employee leaves")
    assert set(query.indices) <= set(doc.indices)  # stemming: employee(s), leave(s)
    assert all(v == 1.0 for v in query.values)
    assert a.encode_query("the of and").indices == ()  # stop words only


def test_unknown_sparse_language_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ENCLAVE_SPARSE__LANGUAGE"):
        Bm25Encoder(SparseSettings(language="klingon"))
