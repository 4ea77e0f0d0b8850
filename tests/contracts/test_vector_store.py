"""The VectorStore contract, run against every implementation.

Access control is the security boundary: a chunk outside the caller's groups must
never be returned or counted, in any search mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends.edge_store import EdgeStore
from backends.qdrant_store import QdrantStore
from core.errors import CollectionMismatchError, StoreLockedError
from core.protocols import VectorStore
from core.types import (
    Chunk,
    CollectionSpec,
    EmbeddedChunk,
    SearchFilter,
    SearchRequest,
    SparseVector,
)

DIM = 4
SPEC = CollectionSpec("contract", DIM, "cosine", "test-embedder", "bm25:test")

StoreFactory = Callable[[Path], VectorStore]
ENGINES: dict[str, StoreFactory] = {
    "qdrant-local": lambda path: QdrantStore("contract", path=path),
    "qdrant-edge": lambda path: EdgeStore("contract", path=path),
}


@pytest.fixture(params=sorted(ENGINES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[VectorStore] = []

    def factory(path: Path = tmp_path / "store") -> VectorStore:
        store = ENGINES[request.param](path)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> VectorStore:
    s = make_store()
    s.ensure_collection(SPEC)
    return s


def point(
    doc: str,
    index: int,
    groups: tuple[str, ...],
    dense: tuple[float, ...],
    terms: dict[int, float],
    content_hash: str = "h1",
    tags: tuple[str, ...] = (),
) -> EmbeddedChunk:
    chunk = Chunk(
        id=f"00000000-0000-0000-0000-{abs(hash((doc, index, content_hash))) % 10**12:012d}",
        doc_id=doc,
        source=f"/kb/{doc}.md",
        title=doc.title(),
        text=f"{doc} chunk {index}",
        chunk_index=index,
        pages=(index + 1,),
        heading_path=("Section",),
        content_hash=content_hash,
        modified_at=1000.0 + index,
        mime_type="text/markdown",
        groups=groups,
        tags=tags,
    )
    sparse = SparseVector(tuple(terms), tuple(terms.values()))
    return EmbeddedChunk(chunk, dense, sparse)


def corpus() -> list[EmbeddedChunk]:
    return [
        point("public", 0, ("everyone",), (1, 0, 0, 0), {1: 1.0, 2: 0.5}),
        point("public", 1, ("everyone",), (0.9, 0.1, 0, 0), {1: 0.8}),
        point("hr", 0, ("hr",), (1, 0, 0, 0), {1: 2.0, 3: 1.0}, tags=("salary",)),
        point("board", 0, ("board", "exec"), (0.99, 0.01, 0, 0), {1: 3.0}),
    ]


def request(
    mode: str, groups: tuple[str, ...] | None, limit: int = 10, fusion: str = "dbsf"
) -> SearchRequest:
    return SearchRequest(
        mode=mode,  # type: ignore[arg-type]
        limit=limit,
        filter=SearchFilter(groups=groups),
        dense=(1.0, 0.0, 0.0, 0.0),
        sparse=SparseVector((1,), (1.0,)),
        fusion=fusion,  # type: ignore[arg-type]
        weights=(1.0, 2.0),
    )


SEARCHES = [("dense", "dbsf"), ("sparse", "dbsf"), ("hybrid", "dbsf"), ("hybrid", "rrf")]


@pytest.mark.parametrize(("mode", "fusion"), SEARCHES)
def test_search_never_returns_chunks_outside_the_callers_groups(
    store: VectorStore, mode: str, fusion: str
) -> None:
    store.upsert(corpus())
    everyone = store.search(request(mode, ("everyone",), fusion=fusion))
    assert {h.chunk.doc_id for h in everyone} == {"public"}
    # Even when the only matches are restricted, the caller gets nothing rather than them.
    assert store.search(request(mode, ("everyone",), limit=1, fusion=fusion))[0].chunk.doc_id == (
        "public"
    )
    hr = store.search(request(mode, ("hr", "nobody"), fusion=fusion))
    assert {h.chunk.doc_id for h in hr} == {"hr"}
    assert store.search(request(mode, (), fusion=fusion)) == []
    assert store.search(request(mode, ("nobody",), fusion=fusion)) == []
    admin = store.search(request(mode, None, fusion=fusion))
    assert {h.chunk.doc_id for h in admin} == {"public", "hr", "board"}
    assert store.count(SearchFilter(groups=("everyone",))) == 2
    assert store.count(SearchFilter(groups=())) == 0
    assert store.count() == 4


def test_results_are_ranked_and_round_trip_the_chunk(store: VectorStore) -> None:
    points = corpus()
    store.upsert(points)
    hits = store.search(request("dense", None, limit=2))
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score
    original = {p.chunk.id: p.chunk for p in points}
    for hit in hits:
        assert hit.chunk == original[hit.chunk.id]


def test_filters_restrict_inside_the_query(store: VectorStore) -> None:
    store.upsert(corpus())
    req = request("hybrid", None)
    for spec, expected in [
        (SearchFilter(groups=None, doc_ids=("hr",)), {"hr"}),
        (SearchFilter(groups=None, tags=("salary",)), {"hr"}),
        (SearchFilter(groups=None, sources=("/kb/board.md",)), {"board"}),
        (SearchFilter(groups=None, modified_after=1000.5), {"public"}),
        (SearchFilter(groups=None, modified_before=1000.5), {"public", "hr", "board"}),
        (SearchFilter(groups=None, mime_types=("application/pdf",)), set()),
        (SearchFilter(groups=None, mime_types=("text/markdown",)), {"public", "hr", "board"}),
        (SearchFilter(groups=("everyone", "hr"), tags=("salary",)), {"hr"}),
        (SearchFilter(groups=("everyone",), tags=("salary",)), set()),
    ]:
        found = store.search(SearchRequest(req.mode, 10, spec, req.dense, req.sparse))
        assert {h.chunk.doc_id for h in found} == expected


@pytest.mark.parametrize(("mode", "fusion"), SEARCHES)
def test_each_mode_ranks_the_best_match_first_and_can_return_vectors(
    store: VectorStore, mode: str, fusion: str
) -> None:
    store.upsert(corpus())
    req = request(mode, ("everyone", "hr"), fusion=fusion)
    hits = store.search(req)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.dense is None for h in hits)
    # dense: public/0 and hr/0 tie on (1,0,0,0); sparse: hr/0 has the heaviest term 1.
    assert hits[0].chunk.doc_id in ({"public", "hr"} if mode == "dense" else {"hr"})
    with_vectors = store.search(
        SearchRequest(req.mode, 10, req.filter, req.dense, req.sparse, with_dense=True)
    )
    assert all(h.dense is not None and len(h.dense) == DIM for h in with_vectors)


def test_neighbours_reads_adjacent_chunks_under_the_same_filter(store: VectorStore) -> None:
    points = corpus()
    store.upsert(points)
    public, hr = points[0].chunk, points[2].chunk
    found = store.neighbours(public, [1, 0, 7], SearchFilter(groups=("everyone",)))
    assert [c.chunk_index for c in found] == [0, 1]
    assert store.neighbours(hr, [0], SearchFilter(groups=("everyone",))) == []
    assert store.neighbours(hr, [0], SearchFilter(groups=())) == []
    assert [c.doc_id for c in store.neighbours(hr, [0], SearchFilter(groups=None))] == ["hr"]
    # mid-update, a new version of "public" exists beside the old: never mixed in
    store.upsert([point("public", 1, ("everyone",), (1, 0, 0, 0), {1: 1.0}, content_hash="h2")])
    again = store.neighbours(public, [1], SearchFilter(groups=("everyone",)))
    assert [c.content_hash for c in again] == ["h1"]


def test_upsert_is_idempotent_and_delete_keeps_only_the_named_version(store: VectorStore) -> None:
    store.upsert(corpus())
    store.upsert(corpus())
    assert store.count() == 4
    store.upsert([point("public", 0, ("everyone",), (1, 0, 0, 0), {1: 1.0}, content_hash="h2")])
    assert store.count(SearchFilter(groups=None, doc_ids=("public",))) == 3
    store.delete_document("public", keep_hash="h2")
    remaining = store.chunks("public")
    assert [(c.chunk_index, c.content_hash) for c in remaining] == [(0, "h2")]
    store.delete_document("hr")
    assert store.chunks("hr") == []
    assert store.count() == 2


def test_set_access_changes_who_can_find_a_document(store: VectorStore) -> None:
    store.upsert(corpus())
    store.set_access("hr", ["everyone"], ["moved"])
    found = store.search(request("dense", ("everyone",)))
    assert "hr" in {h.chunk.doc_id for h in found}
    assert all(c.tags == ("moved",) for c in store.chunks("hr"))


def test_chunks_are_ordered_by_index(store: VectorStore) -> None:
    store.upsert(list(reversed(corpus())))
    assert [c.chunk_index for c in store.chunks("public")] == [0, 1]


def test_a_collection_built_for_another_embedder_is_refused(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "s")
    store.ensure_collection(SPEC)
    store.ensure_collection(SPEC)  # same spec: fine
    other_dim = CollectionSpec("contract", 8, "cosine", "test-embedder", "bm25:test")
    with pytest.raises(CollectionMismatchError, match=r"4 dimensions.*ENCLAVE_EMBEDDER__MODEL"):
        store.ensure_collection(other_dim)
    other_model = CollectionSpec("contract", DIM, "cosine", "another-model", "bm25:test")
    with pytest.raises(CollectionMismatchError, match="another-model"):
        store.ensure_collection(other_model)


def test_info_reports_engine_counts_and_embedder(store: VectorStore) -> None:
    store.upsert(corpus())
    info = store.info()
    assert info.points == 4
    assert info.embedder == "test-embedder"
    assert info.dense_dim == DIM


def test_persisted_data_survives_reopening(make_store: StoreFactory, tmp_path: Path) -> None:
    first = make_store(tmp_path / "persist")
    first.ensure_collection(SPEC)
    first.upsert(corpus())
    first.close()
    second = make_store(tmp_path / "persist")
    assert second.count() == 4


# qdrant-client leaks the lock file's handle when it refuses to open a locked store
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_second_process_on_the_same_embedded_store_is_told_it_is_locked(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    make_store(tmp_path / "locked").ensure_collection(SPEC)
    with pytest.raises(StoreLockedError, match="in use by another Enclave process"):
        make_store(tmp_path / "locked")


def test_export_yields_every_point_with_its_vectors(store: VectorStore) -> None:
    points = corpus()
    store.upsert(points)
    exported = [p for page in store.export(batch_size=3) for p in page]
    assert len(exported) == len(points)
    by_id = {p.chunk.id: p for p in exported}
    for original in points:
        got = by_id[original.chunk.id]
        assert got.chunk == original.chunk
        assert got.sparse.indices == original.sparse.indices
        assert got.sparse.values == pytest.approx(original.sparse.values)  # float32 in Edge
        norm = sum(x * x for x in original.dense) ** 0.5  # cosine stores normalised vectors
        assert got.dense == pytest.approx([x / norm for x in original.dense], abs=1e-6)


def test_optimize_keeps_every_result_and_drop_empties_the_store(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "opt")
    store.ensure_collection(SPEC)
    store.upsert(corpus())
    before = [h.chunk.id for h in store.search(request("hybrid", ("everyone", "hr")))]
    store.optimize()
    store.optimize()  # nothing left to do: fine
    assert [h.chunk.id for h in store.search(request("hybrid", ("everyone", "hr")))] == before
    store.drop()
    assert store.info().points == 0
    store.ensure_collection(SPEC)  # can be created again, empty
    assert store.count() == 0
