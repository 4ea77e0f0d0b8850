"""Search latency benchmark: hybrid search p50/p95 at 10k and 100k chunks, in one process.

For each collection size (``--sizes``, default 10,000 and 100,000 chunks) a fresh
collection is built and the same queries (real SciFact claims) are timed, one query at
a time, round-robin over these measurements so that background load hits them alike:

1. baseline: exact brute-force dense top-k with numpy (``matrix @ query`` over the same
   vectors, masked by the same access groups, precomputed), i.e. a bare matrix product;
2. store only, with precomputed query vectors, through ``store.search(SearchRequest)`` as
   the Retriever sends it (limit top_k + 5, dense vectors returned, the access-control
   filter ``groups in (everyone, hr)`` that production always applies): dense, sparse
   (BM25) and hybrid (dense + sparse prefetch fused by DBSF, the default);
3. end to end: ``Retriever.search(query, Principal(groups=(everyone, hr)), top_k=5,
   mode="hybrid")``, the production path (validate, embed the query, one store query,
   relevance floor, dedupe).

Query encoding (``embedder.embed_query``, BM25 ``encode_query``) does not depend on the
collection size and is timed once, separately. The time to build (upsert, in batches
of ``--batch``) each collection is reported too.

Data. Embedding is slow on a CPU (tens of chunks/s), so 100k chunks are not embedded for
real. Instead:

* real chunk texts: SciFact abstracts and COVID-QA articles (../shared/eval, read in
  place, never copied) split into ~120-word pieces (about 11.6k in all), title included
  as Enclave's ``embedding_text`` does; ``--real`` of them (default 10,000) are embedded
  for real with the bundled all-MiniLM-L6-v2 and BM25-encoded with the configured sparse
  encoder. The dense vectors are cached in an ``.npy`` file under ``--cache-dir``
  (default ``.enclave/bench-cache``, keyed by model + text list), so re-runs skip that;
* synthetic points fill each collection up to its size: each copies a real point's
  text, title and BM25 vector, and takes that point's dense vector plus Gaussian noise
  (cosine ~``--cosine`` to the original, default 0.9), re-normalised; each copy has its
  own id, doc_id and access groups. Copies share their original's text, so dedupe may
  drop some from end-to-end results (fewer hits per query; no effect on latency to
  speak of).

Figures to expect from local mode: it evaluates the group filter in Python for every
point (hybrid: per prefetch and on the fused query) and scores BM25 in a Python loop,
so store latency grows linearly with size (seconds per query at 100k); and it commits
each upserted point to SQLite on its own (an fsync each), so building runs at disk-sync
speed (tens to a hundred points/s on a VM disk; ``--data-dir /dev/shm/...`` takes the
disk out). ``--query-budget-s`` bounds the query phase per size.

Every document gets access groups drawn from everyone / hr / finance / legal; the
benchmark principal holds everyone + hr (about 70% of the chunks are visible).

The store is whatever the settings name: by default Enclave's embedded Qdrant (local
mode) in a temp folder (``--data-dir`` to keep it), which is an in-process, exact,
brute-force engine written in Python (qdrant-client warns beyond 20,000 points).
``--url`` (or ``ENCLAVE_STORE__URL``) benchmarks a Qdrant server instead, in collections
named ``enclave-bench-<size>`` that are dropped before and after.

    python bench/search.py [--sizes 10000,100000] [--queries 100] [--real 10000]
                           [--data-dir DIR] [--url URL] [--query-budget-s S] [--json]

With ``--json`` the human-readable report goes to stderr and one JSON object to stdout.
Nothing here asserts on timings: it prints figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from _bootstrap import REPO, emit_json, machine  # first: offline env and import paths

if TYPE_CHECKING:
    from core.protocols import Embedder, SparseEncoder
    from core.types import Chunk, EmbeddedChunk, SparseVector

EVAL = REPO.parent / "shared" / "eval"
SCIFACT_CORPUS = EVAL / "scifact" / "corpus.jsonl"
SCIFACT_QUERIES = EVAL / "scifact" / "queries.jsonl"
COVIDQA = EVAL / "covidqa" / "covidqa_200423.json"
DEFAULT_CACHE = REPO / ".enclave" / "bench-cache"

PRINCIPAL_GROUPS = ("everyone", "hr")
# (groups, weight) per document: ~70% of the chunks are visible to everyone + hr.
GROUP_SETS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("everyone",), 0.50),
    (("hr",), 0.15),
    (("finance",), 0.15),
    (("legal",), 0.10),
    (("hr", "legal"), 0.05),
    (("finance", "legal"), 0.05),
)
WORDS_PER_PIECE = 120
TOP_K = 5
WARM_UP = 5
MIN_TIMED = 20  # queries timed per size even when --query-budget-s runs out
_NAMESPACE = uuid.UUID("6f0f3d55-2f53-4a52-9a38-0c1d2a7e4b19")

MEASUREMENTS: tuple[tuple[str, str], ...] = (
    ("numpy_dense", "baseline: numpy exact dense top-{limit}"),
    ("store_dense", "store.search dense"),
    ("store_sparse", "store.search sparse (BM25)"),
    ("store_hybrid", "store.search hybrid ({fusion})"),
    ("retriever_hybrid", "Retriever.search hybrid (end to end)"),
)


# -- data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """One real chunk text and the document it comes from."""

    doc_id: str
    source: str
    title: str
    text: str
    chunk_index: int


def _split_words(text: str, words: int) -> list[str]:
    """``text`` in about equal pieces of about ``words`` words."""
    tokens = text.split()
    if not tokens:
        return []
    parts = max(1, round(len(tokens) / words))
    size = math.ceil(len(tokens) / parts)
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


def load_pieces(words: int = WORDS_PER_PIECE) -> list[Piece]:
    """SciFact abstracts and COVID-QA articles, split into ~``words``-word pieces."""
    pieces: list[Piece] = []
    with SCIFACT_CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            doc = f"scifact-{row['_id']}"
            for i, text in enumerate(_split_words(str(row.get("text", "")), words)):
                source = f"/srv/docs/scifact/{row['_id']}.txt"
                pieces.append(Piece(doc, source, str(row.get("title", "")).strip(), text, i))
    data: list[dict[str, Any]] = json.loads(COVIDQA.read_text(encoding="utf-8"))["data"]
    for index, article in enumerate(data):
        contexts = [str(p["context"]).strip() for p in article.get("paragraphs", [])]
        body = "\n\n".join(c for c in contexts if c)
        # COVID-QA has no "title" key; its contexts open with the article title.
        title, _, rest = body.partition("\n")
        doc = f"covidqa-{index:03d}"
        for i, text in enumerate(_split_words(rest, words)):
            source = f"/srv/docs/covidqa/{index:03d}.txt"
            pieces.append(Piece(doc, source, title.strip()[:200], text, i))
    return pieces


def load_queries(limit: int) -> list[str]:
    """The first ``limit`` SciFact claims."""
    queries: list[str] = []
    with SCIFACT_QUERIES.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                queries.append(str(json.loads(line)["text"]).strip())
            if len(queries) >= limit:
                break
    return queries


def _groups_for(rng: np.random.Generator) -> tuple[str, ...]:
    weights = np.array([w for _, w in GROUP_SETS])
    return GROUP_SETS[int(rng.choice(len(GROUP_SETS), p=weights / weights.sum()))][0]


def _chunk(piece: Piece, doc_id: str, source: str, groups: tuple[str, ...]) -> Chunk:
    from core.types import Chunk

    content_hash = hashlib.sha256(doc_id.encode()).hexdigest()
    return Chunk(
        id=str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{piece.chunk_index}")),
        doc_id=doc_id,
        source=source,
        title=piece.title,
        text=piece.text,
        chunk_index=piece.chunk_index,
        pages=(),
        heading_path=(),
        content_hash=content_hash,
        modified_at=1_700_000_000.0 + (int(content_hash[:6], 16) % 10_000_000),
        mime_type="text/plain",
        groups=groups,
    )


@dataclass
class RealSet:
    """The real chunks with their real vectors."""

    pieces: list[Piece]
    dense: np.ndarray  # (n, dim) float32, unit norm
    sparse: list[SparseVector]
    embed_seconds: float | None  # None: read from the cache
    sparse_seconds: float
    cache_file: Path


def embed_real(
    embedder: Embedder,
    sparse_encoder: SparseEncoder,
    pieces: list[Piece],
    cache_dir: Path,
    out: TextIO,
) -> RealSet:
    """Real dense (cached) and BM25 vectors for ``pieces``' embedding texts."""
    texts = [_chunk(p, p.doc_id, p.source, ()).embedding_text for p in pieces]
    digest = hashlib.sha256()
    digest.update(f"{embedder.name}\0{embedder.dimension}\0".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    cache_file = cache_dir / f"dense-{len(texts)}-{digest.hexdigest()[:16]}.npy"
    embed_s: float | None = None
    if cache_file.is_file():
        dense = np.load(cache_file)
    else:
        print(
            f"embedding {len(texts):,} real chunk texts (cached afterwards in {cache_file}) ...",
            file=out,
            flush=True,
        )
        started = time.perf_counter()
        rows: list[tuple[float, ...]] = []
        step = 512
        for i in range(0, len(texts), step):
            rows.extend(embedder.embed_documents(texts[i : i + step]))
            done = min(i + step, len(texts))
            elapsed = time.perf_counter() - started
            print(f"  {done:,}/{len(texts):,} ({done / elapsed:.0f}/s)", file=out, flush=True)
        embed_s = time.perf_counter() - started
        dense = np.asarray(rows, dtype=np.float32)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, dense)
        tmp.replace(cache_file)
    if dense.shape != (len(texts), embedder.dimension):
        raise SystemExit(f"cached embeddings {cache_file} have shape {dense.shape}; delete it")
    started = time.perf_counter()
    sparse = sparse_encoder.encode_documents(texts)
    sparse_s = time.perf_counter() - started
    return RealSet(pieces, dense, sparse, embed_s, sparse_s, cache_file)


@dataclass
class Collection:
    """What a collection of one size holds, as the baseline needs it."""

    size: int
    real: int
    dense: np.ndarray  # (size, dim) float32, unit norm, row i = point i
    ids: list[str]
    visible: np.ndarray  # (size,) bool: shares a group with the principal
    batches: Callable[[int], Iterator[list[EmbeddedChunk]]]


def make_collection(real: RealSet, size: int, cosine: float, seed: int) -> Collection:
    """``size`` points: the real ones first, then noisy copies of them."""
    from core.types import EmbeddedChunk

    n_real = min(size, len(real.pieces))
    dim = real.dense.shape[1]
    rng = np.random.default_rng(seed)
    # cos(v, v + e) ~ 1 / sqrt(1 + dim * sigma^2) for a unit v and e ~ N(0, sigma^2 I).
    sigma = math.sqrt((1.0 / cosine**2 - 1.0) / dim)
    dense = np.empty((size, dim), dtype=np.float32)
    dense[:n_real] = real.dense[:n_real]
    chunks: list[Chunk] = []
    sources: list[int] = []  # real point each point copies
    doc_groups: dict[str, tuple[str, ...]] = {}
    step = 8192
    for start in range(0, size, step):
        stop = min(start + step, size)
        for i in range(start, stop):
            src, copy = i % n_real, i // n_real
            piece = real.pieces[src]
            doc_id = piece.doc_id if copy == 0 else f"{piece.doc_id}-copy{copy}"
            source = piece.source if copy == 0 else f"{piece.source}.copy{copy}"
            if doc_id not in doc_groups:
                doc_groups[doc_id] = _groups_for(rng)
            chunks.append(_chunk(piece, doc_id, source, doc_groups[doc_id]))
            sources.append(src)
        lo = max(start, n_real)
        if lo < stop:
            base = real.dense[sources[lo:stop]]
            noisy = base + rng.normal(0.0, sigma, size=base.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            dense[lo:stop] = noisy
    visible = np.array([bool(set(c.groups) & set(PRINCIPAL_GROUPS)) for c in chunks])

    def batches(batch: int) -> Iterator[list[EmbeddedChunk]]:
        for start in range(0, size, batch):
            stop = min(start + batch, size)
            yield [
                EmbeddedChunk(chunks[i], tuple(dense[i].tolist()), real.sparse[sources[i]])
                for i in range(start, stop)
            ]

    return Collection(size, n_real, dense, [c.id for c in chunks], visible, batches)


# -- helpers -----------------------------------------------------------------------------
def _stats(values_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    p50, p95 = np.percentile(ms, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(ms.mean())}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _machine() -> dict[str, Any]:
    return {
        **machine(),
        "numpy": np.__version__,
        "qdrant_client": _version("qdrant-client"),
    }


def _settings(data_dir: Path, size: int, url: str | None) -> Any:
    from core.settings import Settings

    store: dict[str, Any] = {"collection": f"enclave-bench-{size}"}
    if url:
        store["url"] = url
    return Settings(data_dir=data_dir, store=store)  # type: ignore[arg-type]


def _drop_server_collection(settings: Any) -> None:
    """Drop the bench collection on a Qdrant server (the store API has no such call)."""
    from qdrant_client import QdrantClient

    s = settings.store
    client = QdrantClient(
        url=s.url,
        api_key=s.api_key.get_secret_value() if s.api_key else None,
        timeout=int(s.timeout_s),
    )
    try:
        if client.collection_exists(s.collection):
            client.delete_collection(s.collection)
    finally:
        client.close()


# -- the runs ----------------------------------------------------------------------------
def time_encoding(embedder: Embedder, sparse: SparseEncoder, queries: list[str]) -> dict[str, Any]:
    for text in queries[:WARM_UP]:
        embedder.embed_query(text)
        sparse.encode_query(text)
    dense_s: list[float] = []
    sparse_s: list[float] = []
    for text in queries:
        t0 = time.perf_counter()
        embedder.embed_query(text)
        t1 = time.perf_counter()
        sparse.encode_query(text)
        t2 = time.perf_counter()
        dense_s.append(t1 - t0)
        sparse_s.append(t2 - t1)
    return {"embed_query": _stats(dense_s), "bm25_encode_query": _stats(sparse_s)}


def bench_size(
    settings: Any,
    collection: Collection,
    queries: list[str],
    batch: int,
    embedder: Any,
    out: TextIO,
    budget_s: float = 0.0,
) -> dict[str, Any]:
    from backends.container import build_container
    from core.types import Principal, SearchRequest
    from retrieval.filters import access_scope, build_filter
    from retrieval.search import _DEDUPE_SPARE
    from serving.retriever import build_retriever

    if settings.store.url:
        _drop_server_collection(settings)
    else:  # a fresh embedded store (this size's own folder, from an earlier run with --data-dir)
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    container = build_container(settings, embedder=embedder)
    try:
        store, s = container.store, settings.retrieval
        store.ensure_collection(container.collection_spec())

        # Build: generate each batch untimed, time the upserts.
        upsert_s = 0.0
        started = time.perf_counter()
        done = 0
        next_report = time.perf_counter() + 30.0
        for points in collection.batches(batch):
            t0 = time.perf_counter()
            store.upsert(points)
            upsert_s += time.perf_counter() - t0
            done += len(points)
            if time.perf_counter() >= next_report:
                print(
                    f"  upserted {done:,}/{collection.size:,} ({done / upsert_s:.0f} points/s)",
                    file=out,
                    flush=True,
                )
                next_report = time.perf_counter() + 30.0
        build_wall = time.perf_counter() - started
        stored = store.count()
        if stored != collection.size:
            raise SystemExit(f"the store holds {stored} points, expected {collection.size}")

        principal = Principal("bench", groups=PRINCIPAL_GROUPS)
        search_filter = build_filter(None, access_scope(principal, None))
        retriever = build_retriever(container)
        limit = TOP_K + _DEDUPE_SPARE  # what Retriever.search asks the store for
        encoded = [
            (
                embedder.embed_query(q),
                container.sparse.encode_query(q),
            )
            for q in queries
        ]
        matrix = np.ascontiguousarray(collection.dense)
        hidden = ~collection.visible
        id_of_row = collection.ids

        def request(mode: str, dense: Any, sparse: Any) -> SearchRequest:
            return SearchRequest(
                mode=mode,  # type: ignore[arg-type]
                limit=limit,
                filter=search_filter,
                dense=dense if mode != "sparse" else None,
                sparse=sparse if mode != "dense" else None,
                prefetch_limit=s.prefetch,
                fusion=s.fusion,
                rrf_k=s.rrf_k,
                weights=s.weights,
                with_dense=True,
            )

        def numpy_top(query: np.ndarray) -> np.ndarray:
            scores = matrix @ query
            scores[hidden] = -np.inf
            top = np.argpartition(-scores, limit)[:limit]
            return top[np.argsort(-scores[top])]

        runs: dict[str, Callable[[int], Any]] = {
            "numpy_dense": lambda i: numpy_top(np.asarray(encoded[i][0], dtype=np.float32)),
            "store_dense": lambda i: store.search(request("dense", *encoded[i])),
            "store_sparse": lambda i: store.search(request("sparse", *encoded[i])),
            "store_hybrid": lambda i: store.search(request("hybrid", *encoded[i])),
            "retriever_hybrid": lambda i: retriever.search(
                queries[i], principal, top_k=TOP_K, mode="hybrid"
            ),
        }
        for i in range(min(WARM_UP, len(queries))):
            for run in runs.values():
                run(i)

        times: dict[str, list[float]] = {name: [] for name in runs}
        agreement: list[float] = []
        hits: list[int] = []
        store_hits: list[int] = []
        started = time.perf_counter()
        next_report = started + 30.0
        for i in range(len(queries)):
            if budget_s > 0 and i >= MIN_TIMED and time.perf_counter() - started >= budget_s:
                print(f"  query budget spent after {i} queries", file=out, flush=True)
                break
            results: dict[str, Any] = {}
            for name, run in runs.items():
                t0 = time.perf_counter()
                results[name] = run(i)
                times[name].append(time.perf_counter() - t0)
            exact = {id_of_row[r] for r in results["numpy_dense"].tolist()}
            found = {h.chunk.id for h in results["store_dense"]}
            agreement.append(len(exact & found) / max(len(exact), 1))
            hits.append(len(results["retriever_hybrid"]))
            store_hits.append(len(results["store_hybrid"]))
            if time.perf_counter() >= next_report:
                print(f"  query {i + 1}/{len(queries)}", file=out, flush=True)
                next_report = time.perf_counter() + 30.0
        query_wall = time.perf_counter() - started
    finally:
        container.close()
        if settings.store.url:
            _drop_server_collection(settings)

    return {
        "size": collection.size,
        "real_points": collection.real,
        "synthetic_points": collection.size - collection.real,
        "visible_fraction": float(collection.visible.mean()),
        "build": {
            "points": collection.size,
            "batch": batch,
            "upsert_seconds": upsert_s,
            "points_per_s": collection.size / upsert_s if upsert_s > 0 else None,
            "wall_seconds": build_wall,
        },
        "latency": {name: _stats(values) for name, values in times.items()},
        "store_limit": limit,
        "dense_agreement_with_exact": float(np.mean(agreement)),
        "retriever_hits_per_query": float(np.mean(hits)),
        "store_hybrid_hits_per_query": float(np.mean(store_hits)),
        "queries_timed": len(hits),
        "query_phase_seconds": query_wall,
    }


# -- report ------------------------------------------------------------------------------
def print_report(result: dict[str, Any], out: TextIO) -> None:
    m, c, d = result["machine"], result["config"], result["data"]

    def line(text: str = "") -> None:
        print(text, file=out)

    load = m["load_1m_at_start"]
    line(
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), load(1m) at start "
        f"{load:.2f}, torch threads={m['torch_threads']}, torch {m['torch']}, numpy "
        f"{m['numpy']}, qdrant-client {m['qdrant_client']}, python {m['python']}, {m['cpu']}"
        if load is not None
        else f"machine: nproc={m['nproc']}, {m['cpu']}"
    )
    line(f"store:   {c['store']}")
    embedded = (
        f"embedded in {d['embed_seconds']:.1f}s ({d['real'] / d['embed_seconds']:.0f}/s)"
        if d["embed_seconds"]
        else f"embeddings read from the cache {d['cache_file']}"
    )
    line(
        f"data:    {d['real']:,} real chunk texts of {d['available']:,} (SciFact abstracts + "
        f"COVID-QA articles in ~{d['words_per_piece']}-word pieces), {embedded}; BM25 "
        f"{d['sparse_seconds']:.1f}s"
    )
    line(
        "         beyond them, SYNTHETIC points: a real point's text and BM25 vector with its "
        f"dense vector + Gaussian noise (cosine ~{c['cosine']}), re-normalised"
    )
    line(
        f"queries: {c['queries']} SciFact claims, one at a time after {WARM_UP} warm-ups; "
        f"principal groups {'+'.join(PRINCIPAL_GROUPS)}; top_k {TOP_K}, {c['mode_note']}"
    )
    line()
    enc = result["encoding"]
    header = f"{'size':>8}  {'measurement':<42} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'p50 / numpy':>11}"
    line(header)
    line("-" * len(header))
    for key, name in (
        ("embed_query", "query embedding: embedder.embed_query"),
        ("bm25_encode_query", "query BM25: sparse.encode_query"),
    ):
        st = enc[key]
        line(
            f"{'any':>8}  {name:<42} {st['p50_ms']:>9.2f} {st['p95_ms']:>9.2f} {st['mean_ms']:>9.2f}"
        )
    for r in result["sizes"]:
        line()
        lat = r["latency"]
        base = lat["numpy_dense"]["p50_ms"]
        for key, label in MEASUREMENTS:
            st = lat[key]
            name = label.format(limit=r["store_limit"], fusion=c["fusion"])
            ratio = f"{st['p50_ms'] / base:>10.1f}x" if base > 0 else f"{'-':>11}"
            size = f"{r['size']:>8,}" if key == MEASUREMENTS[0][0] else " " * 8
            line(
                f"{size}  {name:<42} {st['p50_ms']:>9.2f} {st['p95_ms']:>9.2f} "
                f"{st['mean_ms']:>9.2f} {ratio}"
            )
        b = r["build"]
        line(
            f"{'':>8}  build: {b['points']:,} points ({r['real_points']:,} real + "
            f"{r['synthetic_points']:,} synthetic) upserted in {b['upsert_seconds']:.1f}s "
            f"= {b['points_per_s']:,.0f} points/s (batches of {b['batch']})"
        )
        line(
            f"{'':>8}  visible to the principal {r['visible_fraction']:.0%}; store dense top-"
            f"{r['store_limit']} = exact top-{r['store_limit']}: "
            f"{r['dense_agreement_with_exact']:.1%}; hits per query: store hybrid "
            f"{r['store_hybrid_hits_per_query']:.1f}, Retriever {r['retriever_hits_per_query']:.1f}; "
            f"{r['queries_timed']} queries timed in {r['query_phase_seconds']:.0f}s"
        )
    line()
    line(
        "numpy baseline: float32 matrix @ query, precomputed group mask, argpartition; the "
        "store adds filtering, fusion, payloads and vectors in the response."
    )
    line(
        "end to end = query embedding + BM25 + one store query + floor + dedupe; synthetic "
        "copies share their original's text, so dedupe may leave fewer hits."
    )
    for note in result["notes"]:
        line(textwrap.fill(note, width=100, subsequent_indent="  "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated collection sizes in chunks (default 10000,100000)",
    )
    parser.add_argument("--queries", type=int, default=100, help="SciFact queries to time")
    parser.add_argument(
        "--real", type=int, default=10_000, help="real chunk texts to embed (capped by the data)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded stores go (kept); default: a temp folder, removed after",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where the real embeddings are cached (default .enclave/bench-cache)",
    )
    parser.add_argument(
        "--url", default=None, help="Qdrant server URL (default: ENCLAVE_STORE__URL, else embedded)"
    )
    parser.add_argument("--batch", type=int, default=512, help="points per upsert call")
    parser.add_argument(
        "--cosine",
        type=float,
        default=0.9,
        help="expected cosine of a synthetic dense vector to its original (default 0.9)",
    )
    parser.add_argument(
        "--query-budget-s",
        type=float,
        default=300.0,
        help=f"per size, stop timing new queries after this many seconds (at least {MIN_TIMED} "
        "are timed; 0: all of them; default 300). Local mode at 100k takes ~30 s a query",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) before timing (default: torch's own choice, as in "
        "production); on a busy machine 1 avoids thread oversubscription",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (groups, noise)")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes takes comma-separated integers, not {args.sizes!r}")
    if not sizes or min(sizes) <= TOP_K + 5:
        parser.error("--sizes needs sizes above 10")
    if args.queries < 1 or args.real < 1 or args.batch < 1:
        parser.error("--queries, --real and --batch must be at least 1")
    if not 0.0 < args.cosine < 1.0:
        parser.error("--cosine must be between 0 and 1")
    for path in (SCIFACT_CORPUS, SCIFACT_QUERIES, COVIDQA):
        if not path.is_file():
            parser.error(f"data not found: {path}")

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Local mode is not recommended.*")
    out = sys.stderr if args.json else sys.stdout

    from backends.embedders import SentenceTransformerEmbedder
    from backends.sparse import Bm25Encoder

    if args.torch_threads is not None:
        if args.torch_threads < 1:
            parser.error("--torch-threads must be at least 1")
        import torch

        torch.set_num_threads(args.torch_threads)
    host = _machine()
    pieces = load_pieces()
    available = len(pieces)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(available)
    pieces = [pieces[i] for i in order[: min(args.real, available)]]
    queries = load_queries(args.queries)

    tmp = tempfile.mkdtemp(prefix="enclave-bench-search-") if args.data_dir is None else None
    data_dir = Path(tmp) if tmp is not None else args.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        first = _settings(data_dir, sizes[0], args.url)
        embedder = SentenceTransformerEmbedder(first.embedder)
        real = embed_real(embedder, Bm25Encoder(first.sparse), pieces, args.cache_dir, out)
        encoding = time_encoding(embedder, Bm25Encoder(first.sparse), queries)

        results = []
        for size in sizes:
            settings = _settings(data_dir / f"size-{size}", size, args.url)
            print(f"size {size:,}: building ...", file=out, flush=True)
            collection = make_collection(real, size, args.cosine, args.seed + size)
            results.append(
                bench_size(
                    settings, collection, queries, args.batch, embedder, out, args.query_budget_s
                )
            )
            del collection
        engine = (
            f"Qdrant server at {first.store.url} (collections enclave-bench-<size>, dropped after)"
            if first.store.url
            else f"embedded Qdrant (local mode: in-process, exact brute force) under {data_dir}"
            + (" (temp, removed after)" if tmp is not None else "")
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    s = first.retrieval
    notes = []
    if not first.store.url:
        notes.append(
            "local mode: each query evaluates the group filter in Python for every point (hybrid: "
            "once per prefetch and once on the fused query) and scores BM25 in a Python loop, so "
            "store latency grows linearly with size; each upserted point is its own SQLite commit "
            "(one fsync), so the build runs at disk-sync speed (--data-dir on tmpfs, e.g. "
            "/dev/shm, takes the disk out). A Qdrant server (--url) indexes both."
        )
    if first.reranker.model:
        notes.append(
            f"note: a reranker is configured ({first.reranker.model}); end to end includes it."
        )
    result: dict[str, Any] = {
        "machine": host,
        "config": {
            "store": engine,
            "sizes": sizes,
            "queries": len(queries),
            "top_k": TOP_K,
            "fusion": s.fusion,
            "prefetch": s.prefetch,
            "relevance_floor": s.relevance_floor,
            "dedupe_threshold": s.dedupe_threshold,
            "principal_groups": list(PRINCIPAL_GROUPS),
            "cosine": args.cosine,
            "seed": args.seed,
            "mode_note": f"store limit {TOP_K + 5}, prefetch {s.prefetch}, fusion {s.fusion}, "
            f"floor {s.relevance_floor}, dedupe {s.dedupe_threshold}",
        },
        "data": {
            "available": available,
            "real": len(real.pieces),
            "words_per_piece": WORDS_PER_PIECE,
            "embed_seconds": real.embed_seconds,
            "sparse_seconds": real.sparse_seconds,
            "cache_file": str(real.cache_file),
        },
        "encoding": encoding,
        "sizes": results,
        "notes": notes,
    }
    print_report(result, out)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
