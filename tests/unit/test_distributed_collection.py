"""A new collection on a Qdrant server gets the configured shards and replication
factor (distributed mode); local mode, which has neither, is not given them. No Qdrant
server runs here, so the client's calls are recorded instead of sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from backends.container import build_store
from core.settings import Settings
from core.types import CollectionSpec

SPEC = CollectionSpec("kb", 384, "cosine", "minilm", "bm25")


def _recorded_create(store: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments the store gives qdrant-client's ``create_collection`` (the client's
    class is patched: nothing reaches a server or the local files)."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(QdrantClient, "collection_exists", lambda self, name: False)
    monkeypatch.setattr(
        QdrantClient, "create_collection", lambda self, name, **kw: calls.update(kw)
    )
    monkeypatch.setattr(QdrantClient, "create_payload_index", lambda self, *a, **kw: None)
    store.ensure_collection(SPEC)
    return calls


def test_a_server_collection_is_created_with_the_configured_shards_and_replicas(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENCLAVE_STORE__URL", "http://127.0.0.1:9")  # never contacted
    monkeypatch.setenv("ENCLAVE_STORE__SHARDS", "6")
    monkeypatch.setenv("ENCLAVE_STORE__REPLICATION_FACTOR", "2")
    store = build_store(Settings(data_dir=tmp_path))
    try:
        calls = _recorded_create(store, monkeypatch)
    finally:
        store.close()
    assert (calls["shard_number"], calls["replication_factor"]) == (6, 2)
    assert calls["metadata"]["embedder"] == "minilm"


def test_local_mode_is_not_given_distribution_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENCLAVE_STORE__ENGINE", "local")
    monkeypatch.setenv("ENCLAVE_STORE__SHARDS", "6")
    store = build_store(Settings(data_dir=tmp_path))
    try:
        calls = _recorded_create(store, monkeypatch)
    finally:
        store.close()
    assert (calls["shard_number"], calls["replication_factor"]) == (None, None)
