"""``enclave ingest`` killed (SIGKILL) at seeded random points, then run again, ends in
exactly the state of one clean run: the same documents in the registry, the same points
in the store (ids, texts, vectors), none missing, none duplicated, none left over.

The ingest processes are real ``enclave ingest`` runs, started through a small launcher
that only writes a line to a marker file as each stage begins (parse a file, upsert a
batch, record a document, build the index) and lowers the store's indexing threshold,
so that the index build at the end of the job is real work on this small corpus. The
test waits for the n-th marker of a stage, then a seeded random delay, then kills.

Set ``KILL_TEST_SEED`` to try other kill points.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.container import build_container
from core.protocols import Embedder
from core.settings import Settings
from ingest.pipeline import Ingestor
from tests.data.make_files import (
    SAMPLE_TOPICS,
    sample_spec,
    write_docx,
    write_html,
    write_md,
    write_txt,
)
from tests.processes import env_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = int(os.environ.get("KILL_TEST_SEED", "6"))
FILES = 40
SMALL_WRITES = {"ENCLAVE_EMBEDDER__BATCH_SIZE": "4"}  # 16 chunks a write: many writes

LAUNCHER = r"""
import os, sys, time
from pathlib import Path

marks = Path(os.environ["KILL_TEST_MARKS"])


def mark(stage):
    with marks.open("a") as f:
        f.write(stage + "\n")


from backends.edge_store import EdgeStore
from backends.sql.registry import Registry
from ingest.parse import Parser


def announce(cls, name, stage, then=None):
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        mark(stage)
        result = original(*args, **kwargs)
        if then is not None:
            then()
        return result

    setattr(cls, name, wrapper)


def hold():  # the index is built: wait here for the kill, before a clean shutdown
    if os.environ.get("KILL_TEST_HOLD"):
        mark("optimized")
        time.sleep(120)


create = EdgeStore.__init__


def small_index(self, collection, *, path, indexing_threshold_kb=None):
    create(self, collection, path=path, indexing_threshold_kb=1)


EdgeStore.__init__ = small_index
announce(Parser, "parse", "parse")
announce(EdgeStore, "upsert", "upsert")
announce(Registry, "put", "record")
announce(EdgeStore, "optimize", "optimize", then=hold)
sys.argv = ["enclave", *sys.argv[1:]]
from serving.cli import main

main()
"""


def write_corpus(kb: Path) -> None:
    writers = [(write_md, ".md"), (write_txt, ".txt"), (write_html, ".html"), (write_docx, ".docx")]
    for i in range(FILES):
        spec = sample_spec(SAMPLE_TOPICS[i % len(SAMPLE_TOPICS)])
        write, suffix = writers[i % len(writers)]
        write(kb / f"doc{i:02d}{suffix}", dataclasses.replace(spec, title=f"{spec.title} {i}"))


def ingest(kb: Path, data: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    marks = data.parent / f"{data.name}.marks"
    marks.write_text("")
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "ingest", str(kb), "--json"],
            env=env_for(data, **SMALL_WRITES, KILL_TEST_MARKS=str(marks), **env),
            stdout=out,
            stderr=out,
        )


def kill_during(kb: Path, data: Path, stage: str, nth: int, delay: float, **env: str) -> None:
    """Run ``enclave ingest``; SIGKILL it ``delay`` seconds after its ``nth`` ``stage``
    marker; check it was still running."""
    log = data.parent / f"{data.name}.log"
    process = ingest(kb, data, log, **env)
    marks = data.parent / f"{data.name}.marks"
    deadline = time.monotonic() + 300
    try:
        while marks.read_text().split().count(stage) < nth:
            assert process.poll() is None, f"ended before {stage} #{nth}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {stage} #{nth} in 5 minutes"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"it finished first:\n{log.read_text()}"
    markers = marks.read_text().split()
    print(f"killed {delay:.2f}s after {stage} #{nth}:", {m: markers.count(m) for m in set(markers)})


def complete(kb: Path, data: Path) -> None:
    log = data.parent / f"{data.name}.log"
    process = ingest(kb, data, log)
    assert process.wait(timeout=600) == 0, log.read_text()


@dataclasses.dataclass(frozen=True)
class Point:
    source: str
    chunk_index: int
    id: str
    text: str
    content_hash: str
    sparse: tuple[tuple[int, float], ...]


Snapshot = tuple[list[tuple[str, ...]], list[Point], dict[str, tuple[float, ...]]]


def snapshot(data: Path, embedder: Embedder) -> Snapshot:
    """The registry's documents, every point in the store, and the dense vectors by id."""
    container = build_container(Settings(data_dir=data), embedder=embedder)
    try:
        docs = sorted(
            (r.document.source, r.document.content_hash, r.document.title, str(r.chunks))
            for r in container.registry.all()
        )
        points: list[Point] = []
        dense: dict[str, tuple[float, ...]] = {}
        for batch in container.store.export():
            for p in batch:
                c = p.chunk
                sparse = tuple(zip(p.sparse.indices, p.sparse.values, strict=True))
                points.append(Point(c.source, c.chunk_index, c.id, c.text, c.content_hash, sparse))
                dense[c.id] = p.dense
        return docs, sorted(points, key=lambda p: (p.source, p.chunk_index, p.id)), dense
    finally:
        container.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> tuple[Path, Path]:
    """The corpus, and the data dir of one clean, uninterrupted ingestion of it (run in
    this process)."""
    root = tmp_path_factory.mktemp("corpus")
    kb = root / "kb"
    write_corpus(kb)
    container = build_container(Settings(data_dir=root / "clean"), embedder=embedder)
    try:
        report = Ingestor(container).run([kb])
    finally:
        container.close()
    assert (report.added, report.failed) == (FILES, [])
    return kb, root / "clean"


def assert_same_as_clean(data: Path, clean: Path, embedder: Embedder) -> None:
    docs, points, dense = snapshot(data, embedder)
    clean_docs, clean_points, clean_dense = snapshot(clean, embedder)
    assert len(docs) == FILES
    assert docs == clean_docs  # same documents, versions, titles and chunk counts
    ids = [p.id for p in points]
    assert len(ids) == len(set(ids))
    per_doc = {(p.source, p.chunk_index) for p in points}
    assert len(per_doc) == len(points)  # one point per chunk of a document
    assert points == clean_points  # nothing lost, nothing duplicated, nothing left over
    assert sum(int(d[3]) for d in docs) == len(points)
    for id_, vector in dense.items():  # re-embedded in other batches: equal up to rounding
        assert max(abs(a - b) for a, b in zip(vector, clean_dense[id_], strict=True)) < 1e-3


def test_killed_while_parsing_then_twice_while_writing_then_rerun(
    corpus: tuple[Path, Path], tmp_path: Path, embedder: Embedder
) -> None:
    kb, clean = corpus
    rng = random.Random(SEED)
    data = tmp_path / "killed"
    kill_during(kb, data, "parse", 1, rng.uniform(0.0, 1.5))
    kill_during(kb, data, "upsert", rng.randint(1, 4), rng.uniform(0.0, 0.5))
    kill_during(kb, data, "upsert", 1, rng.uniform(0.0, 0.5))  # again, in a rerun
    complete(kb, data)
    assert_same_as_clean(data, clean, embedder)


def test_killed_while_building_the_index_then_rerun(
    corpus: tuple[Path, Path], tmp_path: Path, embedder: Embedder
) -> None:
    kb, clean = corpus
    rng = random.Random(SEED + 1)
    data = tmp_path / "killed"
    kill_during(kb, data, "optimize", 1, rng.uniform(0.0, 1.0), KILL_TEST_HOLD="1")
    complete(kb, data)
    assert_same_as_clean(data, clean, embedder)
