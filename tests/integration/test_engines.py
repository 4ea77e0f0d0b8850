"""The two embedded engines side by side: migration between them, switching engines,
crash recovery and index building of Qdrant Edge. Real `enclave` processes, the real
bundled embedder, real stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backends.edge_store import EdgeStore
from core.types import SearchFilter
from tests.processes import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How many days of annual leave do employees get?"


def _status(data: Path, engine: str) -> dict[str, object]:
    result = run(["status", "--json"], data, ENCLAVE_STORE__ENGINE=engine)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _top(data: Path, engine: str) -> list[tuple[str, str]]:
    result = run(
        ["search", QUESTION, "--json", "--top-k", "3", "--groups", "everyone"],
        data,
        ENCLAVE_STORE__ENGINE=engine,
    )
    assert result.returncode == 0, result.stderr
    return [(h["source"], h["text"]) for h in json.loads(result.stdout)]


def test_migrate_moves_the_knowledge_base_between_engines_without_reembedding(
    kb: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ingested = run(["ingest", str(kb), "--groups", "everyone"], data, ENCLAVE_STORE__ENGINE="local")
    assert ingested.returncode == 0
    local = _status(data, "local")
    assert local["engine"] == "qdrant-local"
    assert int(str(local["chunks"])) > 0

    moved = run(["migrate", "--to", "edge"], data, ENCLAVE_STORE__ENGINE="local")
    assert moved.returncode == 0, moved.stderr
    assert f"Copied {local['chunks']} chunks" in moved.stdout
    assert "ENCLAVE_STORE__ENGINE=edge" in moved.stdout
    edge = _status(data, "edge")
    assert edge["engine"] == "qdrant-edge"
    assert (edge["documents"], edge["chunks"], edge["collection_embedder"]) == (
        local["documents"],
        local["chunks"],
        local["collection_embedder"],
    )
    # the same chunks, vectors and access control: the same answers on both engines
    assert _top(data, "edge") == _top(data, "local")
    assert "leave.md" in _top(data, "edge")[0][0]
    # ingesting on the new engine finds everything unchanged: nothing is embedded again
    again = json.loads(run(["ingest", str(kb), "--json"], data).stdout)  # edge: the default
    assert (again["unchanged"], again["chunks_written"]) == (2, 0)
    assert "index" not in again["stage_seconds"]  # nothing written, nothing to build

    # a second migration into a filled target is refused with what to do, then replaced
    refused = run(["migrate", "--to", "edge"], data, ENCLAVE_STORE__ENGINE="local")
    assert refused.returncode == 2
    assert "--replace" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    replaced = run(["migrate", "--to", "edge", "--replace"], data, ENCLAVE_STORE__ENGINE="local")
    assert replaced.returncode == 0, replaced.stderr
    assert _status(data, "edge")["chunks"] == local["chunks"]

    same = run(["migrate", "--to", "edge"], data, ENCLAVE_STORE__ENGINE="edge")
    assert same.returncode == 2
    assert "nothing to migrate" in same.stderr
    empty = run(["migrate", "--to", "local"], tmp_path / "empty", ENCLAVE_STORE__ENGINE="edge")
    assert empty.returncode == 2
    assert "nothing to migrate" in empty.stderr


def test_switching_engines_without_migrating_ingests_again_instead_of_skipping(
    kb: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = run(["ingest", str(kb), "--json"], data, ENCLAVE_STORE__ENGINE="local")
    written = json.loads(first.stdout)["chunks_written"]
    # the registry says "ingested", but the Edge collection is empty: not "unchanged"
    second = run(["ingest", str(kb), "--json"], data, ENCLAVE_STORE__ENGINE="edge")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["added"], report["chunks_written"]) == (2, written)
    assert "index" in report["stage_seconds"]  # the index is built once, after the job
    assert _status(data, "edge")["chunks"] == written


_WRITER = """
import os, signal, sys
from pathlib import Path
from backends.edge_store import EdgeStore
from core.types import CollectionSpec
from tests.contracts.test_vector_store import corpus
store = EdgeStore("crash", path=Path(sys.argv[1]))
store.ensure_collection(CollectionSpec("crash", 4, "cosine", "test-embedder", "bm25:test"))
store.upsert(corpus())
print("written", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close
"""


def test_edge_recovers_acknowledged_writes_from_its_wal_after_a_crash(tmp_path: Path) -> None:
    root = Path(__file__).parents[2]
    crashed = subprocess.run(
        [sys.executable, "-c", _WRITER, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert crashed.stdout.strip() == "written"
    assert crashed.returncode == -9
    store = EdgeStore("crash", path=tmp_path / "store")
    try:
        assert store.count() == 4
        assert store.count(SearchFilter(groups=("everyone",))) == 2
        assert [c.chunk_index for c in store.chunks("public")] == [0, 1]
        info = store.info()
        assert (info.engine, info.embedder, info.points) == ("qdrant-edge", "test-embedder", 4)
    finally:
        store.close()


def test_a_damaged_edge_store_is_one_clear_line(kb: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(["ingest", str(kb)], data).returncode == 0
    (data / "edge" / "enclave" / "edge_config.json").write_text("{not json", encoding="utf-8")
    broken = run(["status"], data)
    assert broken.returncode == 2
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1, broken.stderr
    assert "cannot open the Qdrant Edge store" in lines[0]
    assert "restore it from a backup" in lines[0]


def test_optimize_builds_the_index_once_a_segment_is_large_and_results_stay_exact(
    tmp_path: Path,
) -> None:
    import random

    from core.types import Chunk, CollectionSpec, EmbeddedChunk, SearchRequest, SparseVector

    rng = random.Random(7)
    store = EdgeStore("big", path=tmp_path / "store", indexing_threshold_kb=1)
    store.ensure_collection(CollectionSpec("big", 8, "cosine", "test-embedder", "bm25:test"))
    points = []
    for i in range(600):
        groups = ("everyone",) if i % 3 else ("hr",)
        chunk = Chunk(
            id=f"00000000-0000-0000-0000-{i:012d}",
            doc_id=f"doc{i}",
            source=f"/kb/doc{i}.md",
            title=f"Doc {i}",
            text=f"chunk {i}",
            chunk_index=0,
            pages=(1,),
            heading_path=(),
            content_hash="h",
            modified_at=float(i),
            mime_type="text/markdown",
            groups=groups,
            tags=(),
        )
        dense = tuple(rng.gauss(0, 1) for _ in range(8))
        points.append(EmbeddedChunk(chunk, dense, SparseVector((i % 50, 99), (1.0, 0.5))))
    for start in range(0, len(points), 100):
        store.upsert(points[start : start + 100])
    query = SearchRequest(
        "hybrid",
        10,
        SearchFilter(groups=("everyone",)),
        points[5].dense,
        SparseVector((5,), (1.0,)),
    )
    before = [h.chunk.id for h in store.search(query)]
    unindexed = store.info().indexed_vectors
    store.optimize()
    try:
        indexed = store.info().indexed_vectors
        # sparse vectors are always indexed; the dense HNSW now covers every point too
        assert (unindexed, indexed) == (600, 1200)
        after = store.search(query)
        assert [h.chunk.id for h in after] == before
        assert all("everyone" in h.chunk.groups for h in after)
        assert after[0].chunk.id == points[5].chunk.id
    finally:
        store.close()
    reopened = EdgeStore("big", path=tmp_path / "store")
    try:
        assert reopened.count() == 600
        assert [h.chunk.id for h in reopened.search(query)] == before
    finally:
        reopened.close()
