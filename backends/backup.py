"""Backup and restore of a knowledge base: the vector store's points and the SQL data.

A backup is one folder::

    manifest.json      what it holds: collection, embedder, counts, SHA-256 of each file
    points.jsonl.gz    every chunk: payload, dense vector, sparse vector (same ids)
    sql.jsonl.gz       every row of every table of the SQL database (registry, API keys,
                       audit log, feedback, conversations, jobs, active collection)

The format does not depend on the engine: a backup of Qdrant Edge restores into a Qdrant
server or local mode, and SQLite rows restore into PostgreSQL. It is written to
``<folder>.partial`` and renamed when complete, so a folder without that suffix is a
whole backup; restore checks every file's hash and the counts before it touches
anything, and refuses a store or database that already holds data unless told to
replace it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, delete, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from backends.container import build_store
from backends.sparse import Bm25Encoder
from backends.sql.app import AppDatabase
from backends.sql.engine import make_engine
from backends.sql.registry import Registry
from core.errors import InputError, StoreError
from core.settings import Settings
from core.types import Chunk, CollectionSpec, EmbeddedChunk, SparseVector

FORMAT = 1
MANIFEST = "manifest.json"
POINTS = "points.jsonl.gz"
SQL = "sql.jsonl.gz"
_BATCH = 512
_SCHEMA_TABLE = "alembic_version"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BackupReport:
    folder: Path
    collection: str
    points: int
    rows: dict[str, int]
    seconds: float


def backup(settings: Settings, folder: Path, progress: Progress | None = None) -> BackupReport:
    """Write the configured knowledge base to ``folder`` (which must not exist)."""
    started = time.perf_counter()
    if folder.exists():
        raise InputError(f"{folder} already exists: name a new folder for the backup")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier interrupted backup
    partial.mkdir(parents=True)
    try:
        url = settings.database_url
        registry = Registry(url)
        try:
            collection = registry.active_collection(settings.store.collection)
        finally:
            registry.close()
        AppDatabase(url).close()  # every table exists, even in a database never served
        store = build_store(settings, collection)
        try:
            info = store.info()
            if info.points and (info.embedder is None or info.dense_dim is None):
                raise StoreError(
                    f"collection '{collection}' does not record its embedder; ingest into it "
                    "once with the current version, then back it up"
                )
            with _gzip_lines(partial / POINTS) as write:
                points = 0
                for page in store.export(_BATCH):
                    for p in page:
                        write(
                            {
                                "payload": p.chunk.payload(),
                                "dense": p.dense,
                                "sparse": [p.sparse.indices, p.sparse.values],
                            }
                        )
                    points += len(page)
                    if progress is not None:
                        progress(f"chunks: {points:,} of {info.points:,}")
        finally:
            store.close()
        rows = _dump_sql(url, partial / SQL)
        manifest = {
            "format": FORMAT,
            "created_at": time.time(),
            "collection": settings.store.collection,
            "physical_collection": collection,
            "engine": info.engine,
            "embedder": info.embedder,
            "dense_dim": info.dense_dim,
            "sparse_encoder": Bm25Encoder(settings.sparse).name,
            "points": points,
            "rows": rows,
            "sha256": {name: _sha256(partial / name) for name in (POINTS, SQL)},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupReport(folder, collection, points, rows, time.perf_counter() - started)


def restore(
    settings: Settings, folder: Path, *, replace: bool = False, progress: Progress | None = None
) -> BackupReport:
    """Restore the backup in ``folder`` into the configured store and database."""
    started = time.perf_counter()
    manifest = read_manifest(folder)
    url = settings.database_url
    if manifest["collection"] != settings.store.collection:
        raise InputError(
            f"the backup in {folder} is of collection '{manifest['collection']}': set "
            f"ENCLAVE_STORE__COLLECTION={manifest['collection']} to restore it"
        )
    collection = str(manifest["physical_collection"])
    AppDatabase(url).close()
    Registry(url).close()  # both sets of tables exist before rows are counted or written
    engine = make_engine(url)
    try:
        tables = _tables(engine)
        unknown = set(manifest["rows"]) - set(tables) - {_SCHEMA_TABLE}
        if unknown:
            raise InputError(
                f"the backup in {folder} has tables this version does not know "
                f"({', '.join(sorted(unknown))}): restore it with the version that made it"
            )
        store = build_store(settings, collection)
        try:
            held = store.info().points
            with engine.connect() as conn:
                filled = {
                    name: n
                    for name in manifest["rows"]
                    if name in tables
                    if (n := conn.execute(select(func.count()).select_from(tables[name])).scalar())
                }
            if (held or filled) and not replace:
                what = [f"{held:,} chunks in collection '{collection}'"] if held else []
                what += [f"{n:,} rows in table {name}" for name, n in sorted(filled.items())]
                raise InputError(
                    f"the configured store and database already hold data ({'; '.join(what)}): "
                    "restore into an empty ENCLAVE_DATA_DIR / database, or run again with "
                    "--replace to overwrite it"
                )
            store.drop()
            if manifest["points"]:
                store.ensure_collection(
                    CollectionSpec(
                        collection,
                        int(manifest["dense_dim"]),
                        "cosine",
                        str(manifest["embedder"]),
                        str(manifest["sparse_encoder"]),
                    )
                )
            restored = 0
            for page in _batches(_read_points(folder / POINTS)):
                store.upsert(page)
                restored += len(page)
                if progress is not None:
                    progress(f"chunks: {restored:,} of {manifest['points']:,}")
            if restored:
                store.optimize()
            if restored != manifest["points"] or (restored and store.count() != restored):
                raise StoreError(
                    f"restored {restored:,} chunks, the backup holds {manifest['points']:,}; "
                    "run the restore again with --replace"
                )
        finally:
            store.close()
        rows = _load_sql(engine, tables, folder / SQL)
    finally:
        engine.dispose()
    if "access_rules" not in manifest["rows"]:  # a backup from before access rules
        registry = Registry(url)
        try:
            registry.keep_document_groups()
        finally:
            registry.close()
    return BackupReport(folder, collection, restored, rows, time.perf_counter() - started)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, after checking that the backup is whole."""
    if folder.name.endswith(".partial"):
        raise InputError(f"{folder} is an interrupted backup: make a new one")
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{folder} is not an Enclave backup (no {MANIFEST})") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {folder / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(
            f"{folder} is backup format {manifest.get('format')!r}; this version reads {FORMAT}"
        )
    for name, expected in manifest["sha256"].items():
        try:
            actual = _sha256(folder / name)
        except OSError as exc:
            raise InputError(f"backup file {folder / name} cannot be read: {exc}") from exc
        if actual != expected:
            raise InputError(
                f"backup file {folder / name} is damaged (its SHA-256 does not match the "
                "manifest): use another backup"
            )
    return manifest


# -- points -----------------------------------------------------------------------------


def _read_points(path: Path) -> Iterator[EmbeddedChunk]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            indices, values = item["sparse"]
            yield EmbeddedChunk(
                Chunk.from_payload(item["payload"]),
                tuple(item["dense"]),
                SparseVector(tuple(indices), tuple(values)),
            )


def _batches(points: Iterator[EmbeddedChunk]) -> Iterator[list[EmbeddedChunk]]:
    batch: list[EmbeddedChunk] = []
    for point in points:
        batch.append(point)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# -- SQL --------------------------------------------------------------------------------


def _tables(engine: Any) -> dict[str, Any]:
    """The application's tables; Alembic's version table belongs to the schema, not the data."""
    metadata = MetaData()
    try:
        metadata.reflect(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the database: {exc}") from exc
    return {table.name: table for table in metadata.sorted_tables if table.name != _SCHEMA_TABLE}


def _dump_sql(url: str, path: Path) -> dict[str, int]:
    engine = make_engine(url)
    rows: dict[str, int] = {}
    try:
        tables = _tables(engine)
        with _gzip_lines(path) as write, engine.connect() as conn:
            for name, table in tables.items():
                rows[name] = 0
                for row in conn.execute(select(table)).mappings():
                    write({"table": name, "row": dict(row)})
                    rows[name] += 1
    finally:
        engine.dispose()
    return rows


def _load_sql(engine: Any, tables: dict[str, Any], path: Path) -> dict[str, int]:
    rows: dict[str, int] = {}
    with engine.begin() as conn:  # one transaction: all rows or none
        for table in reversed(list(tables.values())):
            conn.execute(delete(table))
        pending: dict[str, list[dict[str, Any]]] = {}
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                if item["table"] not in tables:
                    continue
                batch = pending.setdefault(item["table"], [])
                batch.append(item["row"])
                if len(batch) == _BATCH:
                    conn.execute(tables[item["table"]].insert(), batch)
                    rows[item["table"]] = rows.get(item["table"], 0) + len(batch)
                    batch.clear()
        for name, batch in pending.items():
            if batch:
                conn.execute(tables[name].insert(), batch)
                rows[name] = rows.get(name, 0) + len(batch)
        if engine.dialect.name == "postgresql":  # serial columns continue after the rows
            for table in tables.values():
                for column in table.primary_key.columns:
                    if column.type.python_type is int:
                        top = conn.execute(select(func.max(column))).scalar() or 0
                        conn.execute(
                            text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, false)"),
                            {"t": table.name, "c": column.name, "v": top + 1},
                        )
    return rows


# -- files ------------------------------------------------------------------------------


@contextmanager
def _gzip_lines(path: Path) -> Iterator[Callable[[Any], None]]:
    """``with _gzip_lines(path) as write: write(obj)`` writes one JSON object per line."""
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as file:

        def write(obj: Any) -> None:
            file.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")

        yield write


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
