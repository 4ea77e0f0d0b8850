"""Search benchmark: both embedded engines at 10k, 100k (and 1M) chunks, one child process each.

For each collection size (``--points``, default 10,000 and 100,000 chunks; the issue's
full run adds 1,000,000) and each engine (``--engines``, default ``edge,local``):

* ``edge``: Qdrant Edge (``qdrant-edge-py``), Qdrant's Rust engine in-process: HNSW for
  the dense vector, an inverted index with IDF for BM25, payload indexes, a WAL;
* ``local``: qdrant-client's local mode, an in-process pure-Python brute-force engine
  (behind the serialising lock ``build_store`` puts around it);
* ``server``: a Qdrant server (``--url`` or ``ENCLAVE_STORE__URL``), in a collection
  ``enclave-bench-<points>`` dropped before and after.

each (engine, size) runs in a fresh child process (this script re-invoked with a
hidden ``--worker`` option) so that its memory and reopen figures are its own. The
child builds the collection through ``backends.container`` exactly as Enclave does,
then measures:

1. build: upsert throughput (points/s over the ``store.upsert`` calls, batches of
   ``--batch``; generating a batch is not timed), then ``store.optimize()`` timed on
   its own as the index build (Edge: HNSW and segment merge, blocking; local: a no-op);
2. latency, one query at a time, round-robin over these measurements so that
   background load hits them alike (``--queries`` SciFact claims after warm-ups):

   - baseline: exact brute-force dense top-k with numpy (``matrix @ query`` over the
     same vectors, masked by the same access groups, precomputed), a bare matrix product;
   - store only, with precomputed query vectors, through ``store.search(SearchRequest)``
     as the Retriever sends it (limit top_k + 5, dense vectors returned, the
     access-control filter ``groups in (everyone, hr)`` that production always
     applies): dense, sparse (BM25), hybrid (dense + sparse prefetch fused as the
     settings say, DBSF by default) and filtered (hybrid with a selective payload
     filter on top of the groups: ``tags = contract``, carried by ~10% of documents);
   - end to end: ``Retriever.search(query, Principal(groups=(everyone, hr)), top_k=5,
     mode="hybrid")``, the production path (validate, embed the query, one store query,
     relevance floor, dedupe);

3. throughput: store hybrid queries per second with 1, 2 and 8 client threads, each
   level for ``--qps-seconds`` (a client starts no query after that; each runs at least
   one, so a slow engine's level may run longer), with the p50/p95 latency under load;
4. memory: the process's resident set (``VmRSS``/``VmHWM`` from ``/proc/self/status``)
   before the store opens (models, the numpy copy of the vectors and the data are
   already loaded), after the build and after the queries. On tmpfs the store's files
   mapped into memory count too (``RssFile``/``RssShmem``);
5. on-disk size: the sum of the file sizes under the store folder, after closing;
6. reopen: close, then construct the store again + ``ensure_collection`` + one hybrid
   query, timed (a restart of ``enclave serve``).

Query encoding (``embedder.embed_query``, BM25 ``encode_query``) does not depend on the
collection or the engine and is timed once, in the parent, separately.

``/v1/search`` end to end (``--api``, default ``auto``: the largest size up to 100k on
Edge): after that Edge collection is built and closed, the real API server is started
on it as a process (``enclave serve`` on loopback, ``ENCLAVE_STORE__ENGINE=edge``, an
unreachable LLM so that no llama.cpp starts; ``/v1/search`` needs none), a user key
with groups everyone + hr is created with ``enclave keys create``, and ``--queries``
POST /v1/search requests (hybrid, top_k 5) are timed one after another with httpx
(query embedding, auth, audit log and JSON included), then with 2 and 8 concurrent
clients for ``--qps-seconds`` each.

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
  own id, doc_id and source. Copies share their original's text, so dedupe may drop
  some from end-to-end results (fewer hits per query; no effect on latency to speak of);
* payloads are Enclave's real chunk payload: text, title, source, content hash, dates,
  chunk index, and per document drawn at random: access groups from everyone / hr /
  finance / legal (the principal everyone + hr sees ~70% of the chunks), tags (report
  ~25%, contract ~10%, draft ~8%), a file type (PDF with page numbers, Markdown and
  HTML with a heading path, plain text). Pages and headings are payload only: the
  vectors come from title + text, as cached.

Points are generated batch by batch: the child holds only the dense matrix (for the
numpy baseline; above 250k points a memory-mapped file under ``--cache-dir``, deleted
after, so the page cache holds it rather than the process) and a few per-point arrays.
Each (engine, size) store lives in ``--data-dir`` (default: a temp folder) under
``<engine>-<points>/`` and is deleted once measured (``--keep`` keeps it);
``--data-dir /dev/shm/...`` takes the disk out, but tmpfs is memory: at 100k Edge's
files take ~0.5 GB and its index build peaks at ~1.7 GB above the process's baseline,
so 1M on tmpfs needs most of a 24 GB machine (a data dir on disk leaves more room).

The local engine evaluates the group filter in Python for every point and scores BM25
in a Python loop, so its latency grows linearly with size (seconds per query at 100k),
and it builds at ~1.7k points/s. ``--query-budget-s`` bounds its query phase (at least
20 queries are timed) and sizes above ``--local-max-points`` (default 100,000) are
skipped for it, with a printed estimate of what they would take. Ratios local / edge
are printed for every size both ran.

    python bench/search.py [--points 10000,100000[,1000000]] [--engines edge,local]
                           [--queries 100] [--qps-seconds 10] [--query-budget-s 300]
                           [--local-max-points 100000] [--api auto|off|POINTS]
                           [--data-dir DIR] [--keep] [--url URL] [--json]

With ``--json`` the human-readable report goes to stderr, and stdout gets one JSON
object per line: one for query encoding (``kind: query_encoding``, with the machine
and configuration), one per engine and size (``kind: store``: ``engine``, ``points``,
``hybrid_p50_ms``, ``hybrid_p95_ms``, ``qps`` (best of 1/2/8 clients),
``qps_by_clients``, ``upsert_points_per_s``, ``index_build_s``, ``dense_/sparse_/
filtered_/retriever_/numpy_p50_ms`` and ``_p95_ms``, ``rss_mb``, ``disk_mb``,
``reopen_s``, with details; a skipped one has ``skipped`` and null figures), one per
size both engines ran (``kind: ratio``, local / edge) and one for ``/v1/search``
(``kind: api``). Nothing here asserts on timings: it prints figures, and the issue's
targets next to them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
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
SCRIPT = Path(__file__).resolve()

ENGINES = ("edge", "local", "server")
COLLECTION = "enclave-bench"
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
# (tag, probability) per document, drawn independently.
TAGS: tuple[tuple[str, float], ...] = (("report", 0.25), ("contract", 0.10), ("draft", 0.08))
FILTER_TAG = "contract"  # the filtered measurement's selective filter
# (mime type, file extension, weight) per document.
FILE_TYPES: tuple[tuple[str, str, float], ...] = (
    ("application/pdf", "pdf", 0.40),
    ("text/markdown", "md", 0.25),
    ("text/html", "html", 0.15),
    ("text/plain", "txt", 0.20),
)
HEADINGS: tuple[tuple[str, ...], ...] = (
    ("Abstract",),
    ("Introduction",),
    ("Methods", "Study design"),
    ("Methods", "Statistical analysis"),
    ("Results",),
    ("Results", "Secondary outcomes"),
    ("Discussion",),
    ("Discussion", "Limitations"),
    ("Conclusion",),
)
WORDS_PER_PIECE = 120
TOP_K = 5
WARM_UP = 5
WARM_UP_MAX_S = 10.0  # fewer warm-ups (at least one round) when a round is slow
MIN_TIMED = 20  # queries timed per size even when --query-budget-s runs out
MEMMAP_POINTS = 250_000  # above this, the numpy copy of the vectors is a file on disk
CLIENTS = (1, 2, 8)
API_MAX_POINTS = 100_000  # --api auto: the largest size up to this, on Edge
TARGETS_HYBRID_P95_MS = {100_000: 10.0, 1_000_000: 50.0}  # Edge, store only
TARGET_API_P95_MS = {100_000: 60.0}  # /v1/search end to end, embedded stack
# local mode at 100k on 2 cores (bench/reports/search.txt): for the skip estimate
LOCAL_POINTS_PER_S = 1_700.0
LOCAL_MS_PER_1K_POINTS = {"store_dense": 25.0, "store_sparse": 45.0, "store_hybrid": 82.0}
_NAMESPACE = uuid.UUID("6f0f3d55-2f53-4a52-9a38-0c1d2a7e4b19")

MEASUREMENTS: tuple[tuple[str, str, str], ...] = (  # (name, JSON prefix, label)
    ("numpy_dense", "numpy", "baseline: numpy exact dense top-{limit}"),
    ("store_dense", "dense", "store.search dense"),
    ("store_sparse", "sparse", "store.search sparse (BM25)"),
    ("store_hybrid", "hybrid", "store.search hybrid ({fusion})"),
    ("store_filtered", "filtered", "store.search hybrid + tag filter"),
    ("retriever_hybrid", "retriever", "Retriever.search hybrid (end to end)"),
)


# -- data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """One real chunk text and the document it comes from."""

    doc_id: str
    source: str  # without extension: the file type is drawn per document
    title: str
    text: str
    chunk_index: int

    @property
    def embedding_text(self) -> str:
        """``Chunk.embedding_text`` without a heading path (what the cache holds)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


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
                source = f"/srv/docs/scifact/{row['_id']}"
                pieces.append(Piece(doc, source, str(row.get("title", "")).strip(), text, i))
    data: list[dict[str, Any]] = json.loads(COVIDQA.read_text(encoding="utf-8"))["data"]
    for index, article in enumerate(data):
        contexts = [str(p["context"]).strip() for p in article.get("paragraphs", [])]
        body = "\n\n".join(c for c in contexts if c)
        # COVID-QA has no "title" key; its contexts open with the article title.
        title, _, rest = body.partition("\n")
        doc = f"covidqa-{index:03d}"
        for i, text in enumerate(_split_words(rest, words)):
            source = f"/srv/docs/covidqa/{index:03d}"
            pieces.append(Piece(doc, source, title.strip()[:200], text, i))
    return pieces


def real_pieces(real: int, seed: int) -> tuple[list[Piece], int]:
    """``real`` pieces drawn at random (by ``seed``), and how many there are in all."""
    pieces = load_pieces()
    order = np.random.default_rng(seed).permutation(len(pieces))
    return [pieces[i] for i in order[: min(real, len(pieces))]], len(pieces)


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


def cache_file_for(embedder: Embedder, pieces: Sequence[Piece], cache_dir: Path) -> Path:
    """Where the dense vectors of ``pieces`` are cached (keyed by model + texts)."""
    digest = hashlib.sha256()
    digest.update(f"{embedder.name}\0{embedder.dimension}\0".encode())
    for piece in pieces:
        digest.update(piece.embedding_text.encode())
        digest.update(b"\0")
    return cache_dir / f"dense-{len(pieces)}-{digest.hexdigest()[:16]}.npy"


def embed_real(
    embedder: Embedder, pieces: list[Piece], cache_dir: Path, out: TextIO
) -> tuple[Path, float | None]:
    """Make sure the real dense vectors are cached; (cache file, embed seconds or None)."""
    cache_file = cache_file_for(embedder, pieces, cache_dir)
    if cache_file.is_file():
        return cache_file, None
    texts = [p.embedding_text for p in pieces]
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
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npy")
    np.save(tmp, np.asarray(rows, dtype=np.float32))
    tmp.replace(cache_file)
    return cache_file, embed_s


def load_dense(cache_file: Path, count: int, dim: int) -> np.ndarray:
    dense = np.load(cache_file)
    if dense.shape != (count, dim):
        raise SystemExit(f"cached embeddings {cache_file} have shape {dense.shape}; delete it")
    return np.asarray(dense, dtype=np.float32)


def _pick(weights: Sequence[float], u: np.ndarray) -> np.ndarray:
    """Index into ``weights`` for uniform draws ``u`` (weighted choice, vectorised)."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.minimum(
        np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(weights) - 1
    )


class Corpus:
    """``size`` points: the real ones first, then noisy copies of them, made on demand.

    Per-document attributes (groups, tags, file type) come from a generator seeded by
    (seed, copy number), so a size's points are the same in every engine's process and
    a document keeps its attributes across sizes.
    """

    def __init__(
        self,
        pieces: list[Piece],
        real_dense: np.ndarray,
        sparse: list[SparseVector],
        size: int,
        cosine: float,
        seed: int,
        matrix_file: Path | None = None,
    ) -> None:
        n_real = min(size, len(pieces))
        dim = real_dense.shape[1]
        self.size, self.real = size, n_real
        self._pieces, self._sparse = pieces, sparse
        rows = np.arange(size)
        self._src = (rows % n_real).astype(np.int32)
        self._copy = (rows // n_real).astype(np.int32)
        doc_names = sorted({p.doc_id for p in pieces[:n_real]})
        doc_of = {name: i for i, name in enumerate(doc_names)}
        doc = np.array([doc_of[p.doc_id] for p in pieces[:n_real]], dtype=np.int32)[self._src]
        copies = int(self._copy[-1]) + 1
        draws = np.stack(
            [
                np.random.default_rng([seed, c]).random((len(doc_names), 2 + len(TAGS)))
                for c in range(copies)
            ]
        )[self._copy, doc]  # (size, 2 + tags): groups, file type, one per tag
        self._groups = _pick([w for _, w in GROUP_SETS], draws[:, 0]).astype(np.int8)
        self._type = _pick([w for _, _, w in FILE_TYPES], draws[:, 1]).astype(np.int8)
        self._tags = np.zeros(size, dtype=np.uint8)
        for k, (_, p) in enumerate(TAGS):
            self._tags |= (draws[:, 2 + k] < p).astype(np.uint8) << k
        del draws
        seen = np.array([bool(set(g) & set(PRINCIPAL_GROUPS)) for g, _ in GROUP_SETS])
        self.visible = seen[self._groups]
        tag_bit = 1 << [t for t, _ in TAGS].index(FILTER_TAG)
        self.tagged = (self._tags & tag_bit) != 0

        # cos(v, v + e) ~ 1 / sqrt(1 + dim * sigma^2) for a unit v and e ~ N(0, sigma^2 I).
        sigma = math.sqrt((1.0 / cosine**2 - 1.0) / dim)
        self.dense: np.ndarray = (
            np.empty((size, dim), dtype=np.float32)
            if matrix_file is None
            else np.lib.format.open_memmap(matrix_file, "w+", np.float32, (size, dim))
        )
        self.dense[:n_real] = real_dense[:n_real]
        step = 8192
        for start in range(n_real, size, step):
            stop = min(start + step, size)
            rng = np.random.default_rng([seed, 1, start])
            noisy = real_dense[self._src[start:stop]]
            noisy += rng.standard_normal(noisy.shape, dtype=np.float32) * np.float32(sigma)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            self.dense[start:stop] = noisy

    def chunk(self, i: int) -> Chunk:
        from core.types import Chunk

        piece = self._pieces[int(self._src[i])]
        copy = int(self._copy[i])
        mime, ext, _ = FILE_TYPES[int(self._type[i])]
        doc_id = piece.doc_id if copy == 0 else f"{piece.doc_id}-copy{copy}"
        source = f"{piece.source}.{ext}" if copy == 0 else f"{piece.source}-copy{copy}.{ext}"
        content_hash = hashlib.sha256(doc_id.encode()).hexdigest()
        n = piece.chunk_index
        bits = int(self._tags[i])
        return Chunk(
            id=str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{n}")),
            doc_id=doc_id,
            source=source,
            title=piece.title,
            text=piece.text,
            chunk_index=n,
            pages=(n // 2 + 1, n // 2 + 2) if ext == "pdf" and n % 2 else (n // 2 + 1,),
            heading_path=HEADINGS[n % len(HEADINGS)] if ext in ("md", "html") else (),
            content_hash=content_hash,
            modified_at=1_700_000_000.0 + (int(content_hash[:6], 16) % 10_000_000),
            mime_type=mime,
            groups=GROUP_SETS[int(self._groups[i])][0],
            tags=tuple(tag for k, (tag, _) in enumerate(TAGS) if bits >> k & 1),
        )

    def chunk_id(self, i: int) -> str:
        piece = self._pieces[int(self._src[i])]
        copy = int(self._copy[i])
        doc_id = piece.doc_id if copy == 0 else f"{piece.doc_id}-copy{copy}"
        return str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{piece.chunk_index}"))

    def batches(self, batch: int) -> Iterator[list[EmbeddedChunk]]:
        from core.types import EmbeddedChunk

        for start in range(0, self.size, batch):
            stop = min(start + batch, self.size)
            rows = self.dense[start:stop].tolist()
            yield [
                EmbeddedChunk(
                    self.chunk(i), tuple(rows[i - start]), self._sparse[int(self._src[i])]
                )
                for i in range(start, stop)
            ]


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
        "qdrant_edge": _version("qdrant-edge-py"),
    }


def _memory() -> dict[str, float]:
    """This process's memory from /proc/self/status, in MB (Linux; empty elsewhere)."""
    keys = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anon", "RssFile": "file"}
    keys["RssShmem"] = "shmem"
    found: dict[str, float] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in keys and value.strip().endswith("kB"):
            found[f"{keys[name]}_mb"] = int(value.split()[0]) / 1024
    return found


def _load() -> float | None:
    """The 1-minute load average (other work on the machine skews the figures)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _disk(folder: Path) -> dict[str, Any]:
    """Files under ``folder``: count, apparent size and allocated size in bytes."""
    files = size = allocated = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files += 1
                size += st.st_size
                allocated += st.st_blocks * 512
    return {"files": files, "bytes": size, "allocated_bytes": allocated}


def _settings(store_dir: Path, engine: str, points: int, url: str | None) -> Any:
    from core.settings import Settings

    store: dict[str, Any] = {"path": None}
    if engine == "server":
        store.update(url=url, collection=f"{COLLECTION}-{points}")
    else:
        store.update(url=None, engine=engine, collection=COLLECTION)
    return Settings(data_dir=store_dir, store=store)  # type: ignore[arg-type]


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


def _concurrent(
    call: Callable[[int, int], Any], n_items: int, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads, client ``k`` calling ``call(k, i)`` round-robin over the items
    for ``seconds`` (each starts no call after that, and makes at least one): throughput
    and latency."""
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    finished = [0.0] * clients
    errors: list[BaseException] = []
    deadline = [0.0]

    def client(k: int) -> None:
        barrier.wait()
        i, mine = k, latencies[k]
        try:
            while not mine or time.perf_counter() < deadline[0]:
                t0 = time.perf_counter()
                call(k, i % n_items)
                mine.append(time.perf_counter() - t0)
                i += clients
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller)
            errors.append(exc)
        finished[k] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = max(finished) - started
    done = [x for mine in latencies for x in mine]
    return {
        "clients": clients,
        "queries": len(done),
        "seconds": elapsed,
        "qps": len(done) / elapsed if elapsed > 0 else None,
        **_stats(done),
    }


# -- the child process: one engine at one size -------------------------------------------
def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Build one collection and measure it (see the module docstring)."""
    from backends.embedders import SentenceTransformerEmbedder
    from backends.sparse import Bm25Encoder

    engine, size = str(job["engine"]), int(job["points"])
    if job["torch_threads"] is not None:
        import torch

        torch.set_num_threads(int(job["torch_threads"]))
    settings = _settings(Path(job["store_dir"]), engine, size, job["url"])
    embedder = SentenceTransformerEmbedder(settings.embedder)
    pieces, _ = real_pieces(int(job["real"]), int(job["seed"]))
    sparse_encoder = Bm25Encoder(settings.sparse)
    real_dense = load_dense(Path(job["cache_file"]), len(pieces), embedder.dimension)
    # Big sizes: the numpy copy of the vectors in a file on disk (the page cache holds
    # it, reclaimable), not in anonymous memory next to the store.
    matrix_file = (
        Path(job["cache_file"]).with_name(f"synthetic-{size}-{os.getpid()}.npy")
        if size > MEMMAP_POINTS
        else None
    )
    try:
        return _measure(job, settings, embedder, sparse_encoder, pieces, real_dense, matrix_file)
    finally:
        if matrix_file is not None:
            matrix_file.unlink(missing_ok=True)


def _measure(
    job: dict[str, Any],
    settings: Any,
    embedder: Embedder,
    sparse_encoder: SparseEncoder,
    pieces: list[Piece],
    real_dense: np.ndarray,
    matrix_file: Path | None,
) -> dict[str, Any]:
    from backends.container import build_container, build_store
    from core.types import Principal, SearchRequest
    from retrieval.filters import access_scope, build_filter
    from retrieval.search import _DEDUPE_SPARE
    from serving.answers import build_retriever

    engine, size, out = str(job["engine"]), int(job["points"]), sys.stderr
    store_dir = Path(job["store_dir"])
    load_at_start = _load()
    sparse = sparse_encoder.encode_documents([p.embedding_text for p in pieces])
    seed = int(job["seed"]) + size
    corpus = Corpus(pieces, real_dense, sparse, size, float(job["cosine"]), seed, matrix_file)
    del real_dense
    queries = load_queries(int(job["queries"]))
    encoded = [(embedder.embed_query(q), sparse_encoder.encode_query(q)) for q in queries]

    if engine == "server":
        _drop_server_collection(settings)
    else:
        shutil.rmtree(store_dir, ignore_errors=True)
    memory_before = _memory()
    container = build_container(settings, embedder=embedder)
    s = settings.retrieval
    spec = container.collection_spec()
    principal = Principal("bench", groups=PRINCIPAL_GROUPS)
    scope = access_scope(principal, None)
    limit = TOP_K + _DEDUPE_SPARE  # what Retriever.search asks the store for

    def request(mode: str, filter_: Any, dense: Any, sparse_q: Any) -> SearchRequest:
        return SearchRequest(
            mode=mode,  # type: ignore[arg-type]
            limit=limit,
            filter=filter_,
            dense=dense if mode != "sparse" else None,
            sparse=sparse_q if mode != "dense" else None,
            prefetch_limit=s.prefetch,
            fusion=s.fusion,
            rrf_k=s.rrf_k,
            weights=s.weights,
            with_dense=True,
        )

    plain, filtered = build_filter(None, scope), build_filter({"tag": FILTER_TAG}, scope)
    requests = {
        "store_dense": [request("dense", plain, *e) for e in encoded],
        "store_sparse": [request("sparse", plain, *e) for e in encoded],
        "store_hybrid": [request("hybrid", plain, *e) for e in encoded],
        "store_filtered": [request("hybrid", filtered, *e) for e in encoded],
    }
    try:
        store = container.store
        store.ensure_collection(spec)

        # Build: generate each batch untimed, time the upserts, then the index build.
        print(f"{engine} {size:,}: upserting ...", file=out, flush=True)
        upsert_s, done = 0.0, 0
        started = time.perf_counter()
        next_report = started + 30.0
        for points in corpus.batches(int(job["batch"])):
            t0 = time.perf_counter()
            store.upsert(points)
            upsert_s += time.perf_counter() - t0
            done += len(points)
            if time.perf_counter() >= next_report:
                print(
                    f"  upserted {done:,}/{size:,} ({done / upsert_s:,.0f} points/s)",
                    file=out,
                    flush=True,
                )
                next_report = time.perf_counter() + 30.0
        build_wall = time.perf_counter() - started
        print(f"{engine} {size:,}: optimize (index build) ...", file=out, flush=True)
        t0 = time.perf_counter()
        store.optimize()
        index_s = time.perf_counter() - t0
        stored = store.count()
        if stored != size:
            raise SystemExit(f"the store holds {stored} points, expected {size}")
        memory_built = _memory()

        retriever = build_retriever(container)
        matrix, hidden = corpus.dense, ~corpus.visible

        def numpy_top(query: np.ndarray) -> np.ndarray:
            scores = matrix @ query
            scores[hidden] = -np.inf
            top = np.argpartition(-scores, limit)[:limit]
            return top[np.argsort(-scores[top])]

        runs: dict[str, Callable[[int], Any]] = {
            "numpy_dense": lambda i: numpy_top(np.asarray(encoded[i][0], dtype=np.float32)),
            **{
                name: (lambda i, r=reqs: store.search(r[i]))  # type: ignore[misc]
                for name, reqs in requests.items()
            },
            "retriever_hybrid": lambda i: retriever.search(
                queries[i], principal, top_k=TOP_K, mode="hybrid"
            ),
        }
        print(f"{engine} {size:,}: queries ...", file=out, flush=True)
        started = time.perf_counter()
        for i in range(min(WARM_UP, len(queries))):
            for run in runs.values():
                run(i)
            if time.perf_counter() - started >= WARM_UP_MAX_S:
                break

        budget_s = float(job["query_budget_s"])
        times: dict[str, list[float]] = {name: [] for name in runs}
        agreement: list[float] = []
        hits: dict[str, list[int]] = {"retriever": [], "hybrid": [], "filtered": []}
        off_filter = 0
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
            exact = {corpus.chunk_id(r) for r in results["numpy_dense"].tolist()}
            found = {h.chunk.id for h in results["store_dense"]}
            agreement.append(len(exact & found) / max(len(exact), 1))
            hits["retriever"].append(len(results["retriever_hybrid"]))
            hits["hybrid"].append(len(results["store_hybrid"]))
            hits["filtered"].append(len(results["store_filtered"]))
            off_filter += sum(
                FILTER_TAG not in h.chunk.tags or not set(h.chunk.groups) & set(PRINCIPAL_GROUPS)
                for h in results["store_filtered"]
            )
            if time.perf_counter() >= next_report:
                print(f"  query {i + 1}/{len(queries)}", file=out, flush=True)
                next_report = time.perf_counter() + 30.0
        query_wall = time.perf_counter() - started
        if off_filter:
            raise SystemExit(f"{off_filter} filtered hits do not match the filter")

        qps_s = float(job["qps_seconds"])
        concurrency: dict[str, dict[str, Any]] = {}
        for clients in CLIENTS:
            print(f"{engine} {size:,}: {clients} client(s), {qps_s:g}s ...", file=out, flush=True)
            hybrid = requests["store_hybrid"]
            concurrency[str(clients)] = _concurrent(
                lambda _k, i, r=hybrid: store.search(r[i]),  # type: ignore[misc]
                len(queries),
                clients,
                qps_s,
            )
        memory_queried = _memory()
    finally:
        container.close()
    disk = _disk(settings.store_path) if engine != "server" else None

    # Reopen: what a restart of `enclave serve` waits for before its first answer.
    print(f"{engine} {size:,}: reopen ...", file=out, flush=True)
    t0 = time.perf_counter()
    reopened = build_store(settings)
    try:
        t1 = time.perf_counter()
        reopened.ensure_collection(spec)
        t2 = time.perf_counter()
        reopened.search(requests["store_hybrid"][0])
        t3 = time.perf_counter()
        memory_reopened = _memory()
    finally:
        reopened.close()
        if engine == "server":
            _drop_server_collection(settings)
    reopen = {"open_s": t1 - t0, "ensure_s": t2 - t1, "first_query_s": t3 - t2, "total_s": t3 - t0}

    latency = {name: _stats(values) for name, values in times.items()}
    qps_by_clients = {k: v["qps"] for k, v in concurrency.items()}
    result: dict[str, Any] = {
        "kind": "store",
        "engine": engine,
        "points": size,
        "upsert_points_per_s": size / upsert_s if upsert_s > 0 else None,
        "index_build_s": index_s,
        "qps": max((q for q in qps_by_clients.values() if q is not None), default=None),
        "qps_by_clients": qps_by_clients,
        "rss_mb": memory_queried.get("rss_mb"),
        "rss_peak_mb": memory_queried.get("peak_mb"),
        "disk_mb": disk["bytes"] / 1e6 if disk else None,
        "reopen_s": reopen["total_s"],
    }
    for name, prefix, _ in MEASUREMENTS:
        result[f"{prefix}_p50_ms"] = latency[name]["p50_ms"]
        result[f"{prefix}_p95_ms"] = latency[name]["p95_ms"]
    result.update(
        {
            "real_points": corpus.real,
            "synthetic_points": size - corpus.real,
            "visible_fraction": float(corpus.visible.mean()),
            "filter": f"tags={FILTER_TAG}",
            "filter_fraction": float((corpus.visible & corpus.tagged).mean()),
            "build": {
                "points": size,
                "batch": int(job["batch"]),
                "upsert_seconds": upsert_s,
                "wall_seconds": build_wall,
                "index_build_seconds": index_s,
            },
            "latency": latency,
            "concurrency": concurrency,
            "memory": {
                "before_store": memory_before,
                "after_build": memory_built,
                "after_queries": memory_queried,
                "after_reopen": memory_reopened,
            },
            "disk": disk,
            "reopen": reopen,
            "store_limit": limit,
            "dense_agreement_with_exact": float(np.mean(agreement)),
            "hits_per_query": {k: float(np.mean(v)) for k, v in hits.items()},
            "queries_timed": len(agreement),
            "query_phase_seconds": query_wall,
            "store_dir": str(settings.store_path) if engine != "server" else None,
            "load_1m": {"start": load_at_start, "end": _load()},
        }
    )
    return result


# -- the parent: encoding, children, the API server --------------------------------------
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


def run_child(job: dict[str, Any], out: TextIO) -> dict[str, Any]:
    """Run one (engine, size) in a fresh process; its result, or an ``error``."""
    result_file = Path(job["result"])
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--worker", json.dumps(job)],
        stdout=sys.stderr,  # stdout is for --json
        check=False,
    )
    wall = time.perf_counter() - started
    if process.returncode != 0 or not result_file.is_file():
        message = f"the {job['engine']} run at {job['points']:,} points failed (exit code {process.returncode})"
        print(message, file=out, flush=True)
        return {"kind": "store", "engine": job["engine"], "points": job["points"], "error": message}
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    result_file.unlink()
    result["child_wall_seconds"] = wall
    print(f"{job['engine']} {job['points']:,}: done in {wall:.0f}s", file=out, flush=True)
    return result


def _skipped(engine: str, points: int, reason: str) -> dict[str, Any]:
    return {
        "kind": "store",
        "engine": engine,
        "points": points,
        "skipped": reason,
        "hybrid_p50_ms": None,
        "hybrid_p95_ms": None,
        "qps": None,
    }


def estimate_local_s(points: int, measured: dict[str, Any] | None, args: Any) -> float:
    """Rough seconds a local-mode run at ``points`` would take (linear in size)."""
    if measured is not None:
        scale = points / measured["points"]
        per_point_s = 1.0 / measured["upsert_points_per_s"]
        round_s = scale * sum(
            v["mean_ms"] for k, v in measured["latency"].items() if k != "numpy_dense"
        )
        hybrid_s = scale * measured["latency"]["store_hybrid"]["mean_ms"] / 1000
    else:
        per_point_s = 1.0 / LOCAL_POINTS_PER_S
        per_round = (
            sum(LOCAL_MS_PER_1K_POINTS.values()) + 3 * LOCAL_MS_PER_1K_POINTS["store_hybrid"]
        )
        round_s = points / 1000 * per_round
        hybrid_s = points / 1000 * LOCAL_MS_PER_1K_POINTS["store_hybrid"] / 1000
    round_s /= 1000
    timed = (
        args.queries
        if args.query_budget_s <= 0
        else min(args.queries, max(MIN_TIMED, math.ceil(args.query_budget_s / round_s)))
    )
    warm = max(1, min(WARM_UP, math.ceil(WARM_UP_MAX_S / round_s)))
    qps = sum(max(args.qps_seconds, c * hybrid_s) + c * hybrid_s for c in CLIENTS)
    return float(points * per_point_s + (timed + warm) * round_s + qps + 2 * hybrid_s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_api(
    data_dir: Path, points: int, queries: list[str], args: Any, out: TextIO
) -> dict[str, Any]:
    """POST /v1/search against a real ``enclave serve`` on the Edge store in ``data_dir``."""
    import httpx

    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_STORE__")},
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_STORE__ENGINE": "edge",
        "ENCLAVE_STORE__COLLECTION": COLLECTION,
        "ENCLAVE_API__RATE_LIMIT_PER_MINUTE": str(10**9),
        # a configured LLM that is not there: no llama.cpp starts (/v1/search needs none)
        "ENCLAVE_LLM__MODELS": json.dumps(
            [{"name": "bench-no-llm", "base_url": f"http://127.0.0.1:{_free_port()}/v1"}]
        ),
        "ENCLAVE_LLM__RETRIES": "0",
        "ENCLAVE_LOG__LEVEL": "WARNING",
    }
    if args.torch_threads is not None:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    enclave = [sys.executable, "-m", "serving.cli"]
    created = subprocess.run(
        [
            *enclave,
            *("keys", "create", "--role", "user", "--groups", ",".join(PRINCIPAL_GROUPS)),
            *("--name", "bench-search", "--json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    if created.returncode != 0:
        raise SystemExit(f"enclave keys create failed:\n{created.stderr}")
    key = str(json.loads(created.stdout)["key"])
    log = data_dir / "api.log"
    base = f"http://127.0.0.1:{port}"
    print(f"api: starting enclave serve on {base} (log {log}) ...", file=out, flush=True)
    started = time.perf_counter()
    with log.open("ab") as handle:
        server = subprocess.Popen(
            [*enclave, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=handle,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"enclave serve exited:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"enclave serve not up:\n{log.read_text(errors='replace')}")
            time.sleep(0.25)
        startup_s = time.perf_counter() - started
        ready = httpx.get(f"{base}/readyz", timeout=30).json()
        if ready.get("checks", {}).get("store") != "ok":
            raise SystemExit(f"enclave serve: the store is not ready: {ready}")
        headers = {"Authorization": f"Bearer {key}"}
        clients = [
            httpx.Client(base_url=base, headers=headers, timeout=120) for _ in range(max(CLIENTS))
        ]
        hits: list[int] = []

        def post(k: int, i: int) -> None:
            response = clients[k].post(
                "/v1/search", json={"query": queries[i], "top_k": TOP_K, "mode": "hybrid"}
            )
            response.raise_for_status()
            hits.append(len(response.json()["hits"]))

        for i in range(min(WARM_UP, len(queries))):
            post(0, i)
        hits.clear()
        sequential: list[float] = []
        for i in range(len(queries)):
            t0 = time.perf_counter()
            post(0, i)
            sequential.append(time.perf_counter() - t0)
        result: dict[str, Any] = {
            "kind": "api",
            "engine": "edge",
            "points": points,
            "endpoint": "POST /v1/search (hybrid, top_k 5, user key everyone+hr)",
            "queries": len(sequential),
            "startup_s": startup_s,
            "hits_per_query": float(np.mean(hits)),
            **{f"search_{k}": v for k, v in _stats(sequential).items()},
            "qps_sequential": len(sequential) / sum(sequential),
            "concurrency": {},
        }
        for n in CLIENTS[1:]:
            print(f"api: {n} clients, {args.qps_seconds:g}s ...", file=out, flush=True)
            result["concurrency"][str(n)] = _concurrent(post, len(queries), n, args.qps_seconds)
        result["qps_by_clients"] = {
            "1": result["qps_sequential"],
            **{k: v["qps"] for k, v in result["concurrency"].items()},
        }
        result["qps"] = max(q for q in result["qps_by_clients"].values() if q is not None)
        for client in clients:
            client.close()
        return result
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# -- report ------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(result: dict[str, Any], out: TextIO) -> None:
    m, c, d = result["machine"], result["config"], result["data"]

    def line(text: str = "") -> None:
        print(text, file=out)

    load = m["load_1m_at_start"]
    line(
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), load(1m) at start "
        f"{load:.2f}, torch threads={m['torch_threads']}, torch {m['torch']}, numpy "
        f"{m['numpy']}, qdrant-client {m['qdrant_client']}, qdrant-edge {m['qdrant_edge']}, "
        f"python {m['python']}, {m['cpu']}"
        if load is not None
        else f"machine: nproc={m['nproc']}, {m['cpu']}"
    )
    line(f"stores:  {c['store']}")
    embedded = (
        f"embedded in {d['embed_seconds']:.1f}s ({d['real'] / d['embed_seconds']:.0f}/s)"
        if d["embed_seconds"]
        else f"embeddings read from the cache {d['cache_file']}"
    )
    line(
        f"data:    {d['real']:,} real chunk texts of {d['available']:,} (SciFact abstracts + "
        f"COVID-QA articles in ~{d['words_per_piece']}-word pieces), {embedded}"
    )
    line(
        "         beyond them, SYNTHETIC points: a real point's text and BM25 vector with its "
        f"dense vector + Gaussian noise (cosine ~{c['cosine']}), re-normalised; real payloads "
        "(groups, tags, file types, pages, headings drawn per document)"
    )
    line(
        f"queries: {c['queries']} SciFact claims, one at a time after up to {WARM_UP} warm-ups; "
        f"principal groups {'+'.join(PRINCIPAL_GROUPS)}; top_k {TOP_K}, {c['mode_note']}; "
        f"filtered = hybrid + tags={FILTER_TAG}"
    )
    line()
    enc = result["encoding"]
    header = (
        f"{'points':>9}  {'engine':<6}  {'measurement':<38} {'p50 ms':>9} {'p95 ms':>9} "
        f"{'mean ms':>9} {'p50 / numpy':>11}"
    )
    pad = " " * 19
    line(header)
    line("-" * len(header))
    for key, name in (
        ("embed_query", "query embedding: embedder.embed_query"),
        ("bm25_encode_query", "query BM25: sparse.encode_query"),
    ):
        st = enc[key]
        line(
            f"{'any':>9}  {'-':<6}  {name:<38} {st['p50_ms']:>9.2f} {st['p95_ms']:>9.2f} "
            f"{st['mean_ms']:>9.2f}"
        )
    for r in result["runs"]:
        line()
        head = f"{r['points']:>9,}  {r['engine']:<6}  "
        if "skipped" in r or "error" in r:
            line(f"{head}{r.get('skipped') or r.get('error')}")
            continue
        lat = r["latency"]
        base = lat["numpy_dense"]["p50_ms"]
        for i, (key, _, label) in enumerate(MEASUREMENTS):
            st = lat[key]
            name = label.format(limit=r["store_limit"], fusion=c["fusion"])
            ratio = f"{st['p50_ms'] / base:>10.1f}x" if base > 0 else f"{'-':>11}"
            line(
                f"{head if i == 0 else pad}{name:<38} {st['p50_ms']:>9.2f} {st['p95_ms']:>9.2f} "
                f"{st['mean_ms']:>9.2f} {ratio}"
            )
        b = r["build"]
        line(
            f"{pad}build: {b['points']:,} points ({r['real_points']:,} real + "
            f"{r['synthetic_points']:,} synthetic) upserted in {b['upsert_seconds']:.1f}s "
            f"= {_fmt(r['upsert_points_per_s'])} points/s (batches of {b['batch']}); index build "
            f"(store.optimize) {b['index_build_seconds']:.1f}s"
        )
        levels = ", ".join(
            f"{k} client{'s' if k != '1' else ''} {_fmt(v['qps'], ',.1f')}/s "
            f"(p50 {v['p50_ms']:.1f}, p95 {v['p95_ms']:.1f} ms; {v['queries']} in {v['seconds']:.0f}s)"
            for k, v in r["concurrency"].items()
        )
        line(f"{pad}throughput, store hybrid: {levels}")
        mem, disk, ro = r["memory"], r["disk"], r["reopen"]
        before = mem["before_store"].get("rss_mb")
        after = mem["after_queries"]
        store_part = (
            f"; {before:,.0f} before the store opened, so the store +{after['rss_mb'] - before:,.0f}"
            if before is not None and "rss_mb" in after
            else ""
        )
        line(
            f"{pad}memory: RSS {_fmt(after.get('rss_mb'))} MB after queries (peak "
            f"{_fmt(after.get('peak_mb'))}{store_part}; file-backed {_fmt(after.get('file_mb'))}, "
            f"shmem {_fmt(after.get('shmem_mb'))}); disk "
            + (
                f"{disk['bytes'] / 1e6:,.0f} MB in {disk['files']} files "
                f"({disk['allocated_bytes'] / 1e6:,.0f} MB allocated)"
                if disk
                else "-"
            )
        )
        line(
            f"{pad}reopen: {ro['total_s']:.2f}s (open {ro['open_s']:.2f}s, ensure_collection "
            f"{ro['ensure_s']:.3f}s, first hybrid query {ro['first_query_s']:.3f}s); RSS after "
            f"reopen {_fmt(r['memory']['after_reopen'].get('rss_mb'))} MB"
        )
        h = r["hits_per_query"]
        line(
            f"{pad}visible to the principal {r['visible_fraction']:.0%}, and tagged "
            f"{FILTER_TAG} {r['filter_fraction']:.1%}; store dense top-{r['store_limit']} = exact: "
            f"{r['dense_agreement_with_exact']:.1%}; hits/query: hybrid {h['hybrid']:.1f}, "
            f"filtered {h['filtered']:.1f}, Retriever {h['retriever']:.1f}; "
            f"{r['queries_timed']} queries timed in {r['query_phase_seconds']:.0f}s; load(1m) "
            f"{_fmt(r['load_1m']['start'], '.1f')} at start, {_fmt(r['load_1m']['end'], '.1f')} "
            "at end"
        )
    ratios = result["ratios"]
    if ratios:
        line()
        line("local / edge (how many times faster Edge is; qps and upsert: edge / local):")
        for ratio in ratios:
            parts = [
                f"{prefix} p50 {_fmt(ratio.get(f'{prefix}_p50'), ',.0f')}x "
                f"p95 {_fmt(ratio.get(f'{prefix}_p95'), ',.0f')}x"
                for _, prefix, _ in MEASUREMENTS[1:]
            ]
            line(
                textwrap.fill(
                    f"{ratio['points']:>9,}  "
                    + "; ".join(parts)
                    + f"; qps {_fmt(ratio.get('qps'), ',.0f')}x; upsert "
                    f"{_fmt(ratio.get('upsert_points_per_s'), ',.1f')}x",
                    width=110,
                    subsequent_indent=" " * 11,
                )
            )
    api = result["api"]
    if api is not None:
        line()
        if "error" in api:
            line(f"/v1/search: {api['error']}")
        else:
            conc = ", ".join(
                f"{k} clients {_fmt(v['qps'], ',.1f')}/s (p50 {v['p50_ms']:.1f}, p95 "
                f"{v['p95_ms']:.1f} ms)"
                for k, v in api["concurrency"].items()
            )
            line(
                f"/v1/search end to end, `enclave serve` on loopback, Edge at {api['points']:,} "
                f"points, user key {'+'.join(PRINCIPAL_GROUPS)} (server up in "
                f"{api['startup_s']:.0f}s):"
            )
            line(
                f"{pad}1 client: p50 {api['search_p50_ms']:.1f} ms, p95 {api['search_p95_ms']:.1f} "
                f"ms, mean {api['search_mean_ms']:.1f} ms over {api['queries']} queries "
                f"({api['hits_per_query']:.1f} hits each); {conc}"
            )
    line()
    for target in result["targets"]:
        line(f"target: {target}")
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


def ratios_of(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """local / edge latency ratios (edge / local for qps and upsert) per size both ran."""
    done = {(r["engine"], r["points"]): r for r in runs if "latency" in r}
    found = []
    for (engine, points), edge in sorted(done.items(), key=lambda item: item[0][1]):
        local = done.get(("local", points))
        if engine != "edge" or local is None:
            continue
        ratio: dict[str, Any] = {"kind": "ratio", "of": "local / edge", "points": points}
        for _, prefix, _ in MEASUREMENTS[1:]:
            for p in ("p50", "p95"):
                e, lo = edge[f"{prefix}_{p}_ms"], local[f"{prefix}_{p}_ms"]
                ratio[f"{prefix}_{p}"] = lo / e if e else None
        for key in ("qps", "upsert_points_per_s"):
            e, lo = edge[key], local[key]
            ratio[key] = e / lo if e and lo else None
        ratio["qps_by_clients"] = {
            k: (v / local["qps_by_clients"][k] if v and local["qps_by_clients"].get(k) else None)
            for k, v in edge["qps_by_clients"].items()
        }
        found.append(ratio)
    return found


def targets_of(runs: list[dict[str, Any]], api: dict[str, Any] | None) -> list[str]:
    lines = []
    for r in runs:
        limit = TARGETS_HYBRID_P95_MS.get(r["points"])
        if r["engine"] == "edge" and limit is not None and "latency" in r:
            p95 = r["hybrid_p95_ms"]
            lines.append(
                f"Edge store hybrid p95 <= {limit:g} ms at {r['points']:,} points: "
                f"{p95:.1f} ms, {'met' if p95 <= limit else 'MISSED'}"
            )
    if api is not None and "search_p95_ms" in api:
        limit = TARGET_API_P95_MS.get(api["points"])
        if limit is not None:
            p95 = api["search_p95_ms"]
            lines.append(
                f"/v1/search end to end p95 <= {limit:g} ms at {api['points']:,} points: "
                f"{p95:.1f} ms, {'met' if p95 <= limit else 'MISSED'}"
            )
    return lines


# -- entry point -------------------------------------------------------------------------
def _ints(text: str, option: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        return [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"{option} takes comma-separated integers, not {text!r}")
    return []  # unreachable: parser.error exits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--points",
        "--sizes",
        dest="points",
        default="10000,100000",
        help="comma-separated collection sizes in chunks (default 10000,100000)",
    )
    parser.add_argument(
        "--engines",
        default="edge,local",
        help="comma-separated engines: edge, local, server (needs --url); default edge,local",
    )
    parser.add_argument("--queries", type=int, default=100, help="SciFact queries to time")
    parser.add_argument(
        "--real", type=int, default=10_000, help="real chunk texts to embed (capped by the data)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the stores go, one folder per engine and size; default: a temp folder",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each store after measuring it (default: delete)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where the real embeddings are cached (default .enclave/bench-cache)",
    )
    parser.add_argument(
        "--url", default=None, help="Qdrant server URL for --engines server (or ENCLAVE_STORE__URL)"
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
        help=f"per engine and size, stop timing new queries after this many seconds (at least "
        f"{MIN_TIMED} are timed; 0: all of them; default 300). Local mode at 100k takes ~25 s a "
        "round",
    )
    parser.add_argument(
        "--qps-seconds",
        type=float,
        default=10.0,
        help="seconds per concurrency level (1, 2, 8 clients) of the throughput runs (default 10)",
    )
    parser.add_argument(
        "--local-max-points",
        type=int,
        default=100_000,
        help="skip the local engine above this size (default 100000; it takes ~25 s a query "
        "round at 100k and grows linearly)",
    )
    parser.add_argument(
        "--api",
        default="auto",
        help="time POST /v1/search on a real `enclave serve` on the Edge store of this size: "
        f"auto (default: the largest size up to {API_MAX_POINTS:,}), off, or a size from --points",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) before timing (default: torch's own choice, as in "
        "production); on a busy machine 1 avoids thread oversubscription",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (groups, noise)")
    parser.add_argument("--json", action="store_true", help="JSON objects on stdout, one a line")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Local mode is not recommended.*")
    if args.worker is not None:
        job = json.loads(args.worker)
        outcome = run_worker(job)
        Path(job["result"]).write_text(json.dumps(outcome, default=str), encoding="utf-8")
        return 0

    sizes = _ints(args.points, "--points", parser)
    if not sizes or min(sizes) <= TOP_K + 5:
        parser.error("--points needs sizes above 10")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        parser.error(f"--engines takes a comma-separated subset of {', '.join(ENGINES)}")
    url = args.url or os.environ.get("ENCLAVE_STORE__URL") or None
    if "server" in engines and not url:
        parser.error("--engines server needs --url (or ENCLAVE_STORE__URL)")
    if args.queries < 1 or args.real < 1 or args.batch < 1:
        parser.error("--queries, --real and --batch must be at least 1")
    if not 0.0 < args.cosine < 1.0:
        parser.error("--cosine must be between 0 and 1")
    if args.qps_seconds <= 0:
        parser.error("--qps-seconds must be positive")
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error("--torch-threads must be at least 1")
    api_points: int | None = None
    if args.api == "auto":
        fitting = [n for n in sizes if n <= API_MAX_POINTS]
        api_points = max(fitting) if fitting and "edge" in engines else None
    elif args.api != "off":
        api_points = _ints(args.api, "--api", parser)[0] if args.api.strip() else None
        if api_points not in sizes or "edge" not in engines:
            parser.error("--api names a size from --points, and needs the edge engine")
    for path in (SCIFACT_CORPUS, SCIFACT_QUERIES, COVIDQA):
        if not path.is_file():
            parser.error(f"data not found: {path}")
    out = sys.stderr if args.json else sys.stdout

    from backends.embedders import SentenceTransformerEmbedder
    from backends.sparse import Bm25Encoder
    from core.settings import get_settings

    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    host = _machine()
    settings = get_settings()
    pieces, available = real_pieces(args.real, args.seed)
    queries = load_queries(args.queries)
    embedder = SentenceTransformerEmbedder(settings.embedder)
    cache_file, embed_s = embed_real(embedder, pieces, args.cache_dir, out)
    encoding = time_encoding(embedder, Bm25Encoder(settings.sparse), queries)
    s = settings.retrieval
    config = {
        "store": "",
        "engines": engines,
        "points": sizes,
        "queries": len(queries),
        "top_k": TOP_K,
        "fusion": s.fusion,
        "prefetch": s.prefetch,
        "relevance_floor": s.relevance_floor,
        "dedupe_threshold": s.dedupe_threshold,
        "principal_groups": list(PRINCIPAL_GROUPS),
        "filter": f"tags={FILTER_TAG}",
        "cosine": args.cosine,
        "seed": args.seed,
        "batch": args.batch,
        "qps_seconds": args.qps_seconds,
        "query_budget_s": args.query_budget_s,
        "local_max_points": args.local_max_points,
        "mode_note": f"store limit {TOP_K + 5}, prefetch {s.prefetch}, fusion {s.fusion}, "
        f"floor {s.relevance_floor}, dedupe {s.dedupe_threshold}",
    }
    encoding_json = {
        "kind": "query_encoding",
        **{f"embed_query_{k}": v for k, v in encoding["embed_query"].items()},
        **{f"bm25_{k}": v for k, v in encoding["bm25_encode_query"].items()},
        "machine": host,
        "config": config,
    }
    emit_json(encoding_json, args.json)
    sys.stdout.flush()

    tmp = tempfile.mkdtemp(prefix="enclave-bench-search-") if args.data_dir is None else None
    data_dir: Path = Path(tmp) if tmp is not None else args.data_dir
    runs: list[dict[str, Any]] = []
    api: dict[str, Any] | None = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            for engine in engines:
                if engine == "local" and size > args.local_max_points:
                    done = [r for r in runs if r["engine"] == "local" and "latency" in r]
                    measured = max(done, key=lambda r: int(r["points"])) if done else None
                    basis = (
                        f"scaled linearly from its {measured['points']:,}-point run"
                        if measured
                        else "at ~1.7k points/s and ~82 ms a hybrid query per 1k points"
                    )
                    reason = (
                        f"local skipped: {size:,} points is above --local-max-points "
                        f"{args.local_max_points:,}; it would take "
                        f"~{estimate_local_s(size, measured, args) / 60:,.0f} min ({basis})"
                    )
                    print(reason, file=out, flush=True)
                    runs.append(_skipped(engine, size, reason))
                    emit_json(runs[-1], args.json)
                    sys.stdout.flush()
                    continue
                store_dir = data_dir / f"{engine}-{size}"
                job = {
                    "engine": engine,
                    "points": size,
                    "store_dir": str(store_dir),
                    "result": str(data_dir / f"result-{engine}-{size}.json"),
                    "cache_file": str(cache_file),
                    "url": url if engine == "server" else None,
                    "real": args.real,
                    "seed": args.seed,
                    "cosine": args.cosine,
                    "queries": args.queries,
                    "batch": args.batch,
                    "query_budget_s": args.query_budget_s,
                    "qps_seconds": args.qps_seconds,
                    "torch_threads": args.torch_threads,
                }
                print(f"{engine} {size:,}: starting a child process ...", file=out, flush=True)
                runs.append(run_child(job, out))
                emit_json(runs[-1], args.json)
                sys.stdout.flush()
                if engine == "edge" and size == api_points and "latency" in runs[-1]:
                    try:
                        api = bench_api(store_dir, size, queries, args, out)
                    except (SystemExit, OSError, ValueError) as exc:
                        api = {"kind": "api", "engine": "edge", "points": size, "error": str(exc)}
                        print(f"api: failed: {exc}", file=out, flush=True)
                    emit_json(api, args.json)
                    sys.stdout.flush()
                if not args.keep and engine != "server":
                    shutil.rmtree(store_dir, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    ratios = ratios_of(runs)
    for ratio in ratios:
        emit_json(ratio, args.json)
    kept = f"under {data_dir}" + (" (temp, removed after)" if tmp is not None else "")
    if not args.keep:
        kept += ", each deleted once measured"
    names = {
        "edge": "Qdrant Edge (in-process Rust engine: HNSW, payload indexes, WAL)",
        "local": "qdrant-client local mode (in-process, pure-Python brute force)",
        "server": f"Qdrant server at {url}",
    }
    config["store"] = "; ".join(names[e] for e in engines) + f"; stores {kept}"
    notes = []
    if "local" in engines:
        notes.append(
            "local mode: each query evaluates the group filter in Python for every point (hybrid: "
            "once per prefetch and once on the fused query) and scores BM25 in a Python loop, so "
            "store latency grows linearly with size; it serialises calls (one lock), so more "
            "clients add no throughput."
        )
    if "edge" in engines:
        notes.append(
            "edge: upserts land in an appendable segment searched by brute force; "
            "store.optimize() (the index build) builds the HNSW and merges segments, as after an "
            "ingestion job. Dense top-k agreement with the exact numpy top-k is HNSW's recall."
        )
    if settings.reranker.model:
        notes.append(
            f"note: a reranker is configured ({settings.reranker.model}); end to end includes it."
        )
    notes.append(
        "memory: the child process holds the embedding model and the dense vectors as a numpy "
        "matrix (points x 384 x 4 bytes) for the baseline besides the store; 'the store +' is "
        "the growth from the store's opening to the end of the queries."
    )
    result: dict[str, Any] = {
        "machine": host,
        "config": config,
        "data": {
            "available": available,
            "real": len(pieces),
            "words_per_piece": WORDS_PER_PIECE,
            "embed_seconds": embed_s,
            "cache_file": str(cache_file),
        },
        "encoding": encoding,
        "runs": runs,
        "ratios": ratios,
        "api": api,
        "targets": targets_of(runs, api),
        "notes": notes,
    }
    print_report(result, out)
    failed = any("error" in r for r in runs) or (api is not None and "error" in api)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
