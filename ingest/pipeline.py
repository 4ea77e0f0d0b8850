"""The ingestion job: find files, decide what changed, parse/chunk/embed/upsert, report.

Crash safety comes from the order of writes. For each new or changed document:

1. upsert its chunks (ids derive from doc id + content hash + index, so a repeat
   writes the same points again);
2. delete the document's chunks with any other content hash (the old version);
3. record it in the registry.

A run stopped anywhere leaves either the old version, both versions (repaired at
step 2 of the next run), or the new one; the registry only says "done" after 1-2.
Deletions remove the chunks first and the registry row last, for the same reason.

Parsing runs in a producer thread ahead of the embedder (bounded queue), and chunks
are embedded in batches that span documents.

A document's groups come from the access rules (``ingest/access.py``), never from how
the run was invoked: ``groups`` records a rule for each path given, then the rules
apply. Which files a job considers (folders walked, symbolic links judged) and what
identifies them is ``ingest/discover.py``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from backends.container import Container
from backends.sql.registry import RegisteredDocument
from core.errors import DocumentError, FileTooLargeError
from core.protocols import VectorStore
from core.types import Chunk, Document, EmbeddedChunk, group_names
from ingest.access import AccessControl, RuleSet, cli_actor, rule_prefix
from ingest.chunk import Chunker
from ingest.discover import (
    Failure,
    discover,
    doc_id_for,
    hash_file,
    os_reason,
    source_of,
)
from ingest.parse import Parser, mime_type_for

logger = logging.getLogger(__name__)

FileStatus = Literal["added", "updated", "unchanged", "deleted"]


class ProgressListener(Protocol):
    """Receives progress: the number of files to process, then increments."""

    def start(self, total_files: int) -> None: ...

    def advance(self, files: int = 0, chunks: int = 0) -> None: ...


@dataclass(slots=True)
class IngestReport:
    """What a run did. ``as_dict`` is the ``--json`` contract."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_written: int = 0
    failed: list[Failure] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    admin_only: int = 0  # documents of the run that no access rule covers
    warnings: list[str] = field(default_factory=list)  # to act on, though nothing failed
    # source -> added, updated, unchanged or deleted (what the API's job shows per file;
    # not in ``as_dict``: a sync of a large share would print every file)
    files: dict[str, FileStatus] = field(default_factory=dict)

    def mark(self, source: str | None, status: FileStatus) -> None:
        """Count one document as ``status`` and, where its source is known, note it."""
        setattr(self, status, getattr(self, status) + 1)
        if source is not None:
            self.files[source] = status

    def warn_admin_only(self, sources: Sequence[str]) -> None:
        """Count the documents no rule covers, and say how to share them."""
        if not sources:
            return
        n = len(sources)
        self.admin_only += n
        self.warnings.append(
            f"{n} document{'s are' if n != 1 else ' is'} covered by no access rule, so only "
            f"admins can read {'them' if n != 1 else 'it'} (e.g. {sources[0]}); share a "
            "folder with `enclave access set FOLDER --groups G1,G2`, or ingest it with --groups"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "chunks_written": self.chunks_written,
            "failed": [{"source": f.source, "reason": f.reason} for f in self.failed],
            "admin_only": self.admin_only,
            "warnings": list(self.warnings),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


@dataclass(frozen=True, slots=True)
class _Planned:
    path: Path
    document: Document
    kind: Literal["add", "update"]


@dataclass(slots=True)
class _Parsed:
    planned: _Planned
    document: Document | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Plan:
    """A job decided from the files and the registry alone, nothing written yet: what
    :meth:`Ingestor.run` does, split into parts that queued tasks can do
    (``ingest/queue.py``)."""

    report: IngestReport  # unchanged files, and files that could not be read
    files: list[_Planned]  # new and changed files: parse, chunk, embed, write
    access: list[Document]  # same content, new groups or tags: a payload update only
    deletions: list[str]  # doc ids of registered documents whose file is gone

    def count(self) -> IngestReport:
        """The report with what the plan would do counted (a dry run's report)."""
        report = self.report
        report.added = sum(1 for p in self.files if p.kind == "add")
        report.updated = sum(1 for p in self.files if p.kind == "update") + len(self.access)
        report.deleted = len(self.deletions)
        return report


@dataclass(slots=True)
class Prepared:
    """Files parsed, chunked and embedded but not written (:meth:`Ingestor.prepare`)."""

    items: list[_Parsed] = field(default_factory=list)
    points: list[EmbeddedChunk] = field(default_factory=list)


_DONE = object()
_BATCHES_PER_WRITE = 4


class Ingestor:
    """Runs ingestion jobs against one container's store and registry."""

    def __init__(self, container: Container) -> None:
        self._c = container
        self._settings = container.settings.ingest
        self._parser = Parser(self._settings)

    @property
    def access(self) -> AccessControl:
        """Access rules on this container's registry and (current) store."""
        return AccessControl(self._c.registry, self._c.store)

    # -- public --------------------------------------------------------------------------
    def run(
        self,
        paths: Sequence[str | Path],
        *,
        groups: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        dry_run: bool = False,
        progress: ProgressListener | None = None,
        actor: str | None = None,
    ) -> IngestReport:
        """Ingest ``paths``. ``groups`` records the access rule ``path -> groups`` for
        each path first; without it the stored rules apply. ``tags`` replaces the tags of
        every document of the run; without it documents keep theirs."""
        started = time.perf_counter()
        rules = self.record_rules(paths, groups, actor, apply=not dry_run)
        plan = self._plan_job(paths, rules, tags, trusted=None)
        report = plan.report
        report.dry_run = dry_run
        if dry_run:
            plan.count()
        else:
            self.apply_changes(plan.access, plan.deletions, report)
            if plan.files:
                self._process(plan.files, report, progress)
        if report.chunks_written or report.deleted:
            index_started = time.perf_counter()
            self._c.store.optimize()  # once per job, not per write
            report.stage_seconds["index"] = time.perf_counter() - index_started
        report.seconds = time.perf_counter() - started
        logger.info("ingest finished: %s", report.as_dict())
        return report

    def record_rules(
        self,
        paths: Sequence[str | Path],
        groups: Sequence[str] | None,
        actor: str | None,
        *,
        apply: bool,
    ) -> RuleSet:
        """With ``groups``, the rule ``path -> groups`` for each of ``paths`` (recorded;
        with ``apply``, also applied to the registered documents under it, which needs the
        store); the rules a run then uses (a dry run's include its rules, unrecorded)."""
        if groups is None:
            return self.access.rules()
        names = group_names(groups)
        prefixes = []
        for raw in paths:
            given = Path(raw).expanduser()
            try:
                if given.exists() and (given.is_dir() or not given.is_symlink()):
                    prefixes.append(rule_prefix(raw))
            except (OSError, ValueError):
                continue  # reported by discovery (a link to a file gets no rule: its
                # target is ingested under the target's own rules)
        access = self.access
        if not apply:
            rules = access.rules()
            for prefix in prefixes:
                rules = rules.with_rule(prefix, names)
            return rules
        for prefix in prefixes:
            access.set_rule(prefix, names, actor or cli_actor())
        return access.rules()

    def record_rules_only(
        self, paths: Sequence[str | Path], groups: Sequence[str] | None, actor: str | None
    ) -> None:
        """Record the rules of ``groups`` without applying them (a queued job: its
        access task applies them, inside the store's write turn)."""
        if groups is None:
            return
        names = group_names(groups)
        registry = self._c.registry
        for raw in paths:
            given = Path(raw).expanduser()
            if given.exists() and (given.is_dir() or not given.is_symlink()):
                registry.set_rule(rule_prefix(raw), names, actor or cli_actor(), "admin", 0)

    def plan(
        self,
        paths: Sequence[str | Path],
        *,
        groups: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        trust_registry: bool | None = None,
        record: bool = True,
        actor: str | None = None,
    ) -> Plan:
        """Decide a job without writing to the store. ``groups`` records the rules (with
        ``record``; else they only shape this plan). ``trust_registry``: whether the
        registry's hashes count (None: ask the store, as :meth:`run` does)."""
        if record:
            self.record_rules_only(paths, groups, actor)
            rules = self.access.rules()
        else:
            rules = self.record_rules(paths, groups, actor, apply=False)
        return self._plan_job(paths, rules, tags, trusted=trust_registry)

    def update_access(
        self,
        doc_id: str,
        groups: Sequence[str],
        tags: Sequence[str],
        *,
        store: VectorStore | None = None,
    ) -> bool:
        """Give a registered document new groups and tags (a payload update, no
        re-embedding) in ``store`` (default: the container's); False when it is no longer
        registered."""
        previous = self._c.registry.get(doc_id)
        if previous is None:
            return False
        (store or self._c.store).set_access(doc_id, tuple(groups), tuple(tags))
        kept = replace(previous.document, groups=tuple(groups), tags=tuple(tags))
        self._c.registry.put(kept, previous.chunks)
        return True

    def apply_changes(
        self,
        access: Sequence[Document],
        deletions: Sequence[str],
        report: IngestReport,
        *,
        store: VectorStore | None = None,
    ) -> None:
        """A plan's changes that need no parsing, in ``store`` (default: the container's):
        documents with the same content get their new groups and tags, documents whose
        file is gone are removed; both counted in ``report``."""
        for document in access:
            if self.update_access(document.doc_id, document.groups, document.tags, store=store):
                report.mark(document.source, "updated")
        for doc_id in deletions:
            record = self.delete(doc_id, store=store)
            report.mark(record.document.source if record else None, "deleted")

    def prepare(
        self,
        files: Sequence[tuple[Path, Document, Literal["add", "update"]]],
        report: IngestReport,
        on_file: Callable[[int], None] | None = None,
    ) -> Prepared:
        """Parse, chunk and embed planned files without touching the store (the first
        phase of a queued task); files that cannot be ingested go to ``report.failed``.
        ``on_file`` receives each file's chunk count as it is parsed."""
        chunker = self._chunker()
        prepared = Prepared()
        started = time.perf_counter()
        for path, document, kind in files:
            item = self._parse_one(_Planned(path, document, kind), chunker)
            if item.error is not None:
                report.failed.append(Failure(document.source, item.error))
            else:
                prepared.items.append(item)
            if on_file is not None:
                on_file(len(item.chunks))
        parsed = time.perf_counter()
        chunks = [c for item in prepared.items for c in item.chunks]
        step = self._write_size()
        for start in range(0, len(chunks), step):
            prepared.points += self._embed(chunks[start : start + step])
        stages = report.stage_seconds
        stages["parse_chunk"] = stages.get("parse_chunk", 0.0) + parsed - started
        stages["embed"] = stages.get("embed", 0.0) + time.perf_counter() - parsed
        return prepared

    def commit(
        self, prepared: Prepared, report: IngestReport, *, store: VectorStore | None = None
    ) -> None:
        """Write prepared files (the second phase of a queued task) into ``store`` (default:
        the container's) in :meth:`run`'s crash-safe order: upsert their chunks, then per
        document delete other versions and record it. Repeating a commit writes the same
        points again."""
        if not prepared.items:
            return
        target = store or self._c.store
        started = time.perf_counter()
        target.ensure_collection(self._c.collection_spec())
        step = self._write_size()
        for start in range(0, len(prepared.points), step):
            target.upsert(prepared.points[start : start + step])
        for item in prepared.items:
            self._finish(item, report, target)
        stages = report.stage_seconds
        stages["upsert"] = stages.get("upsert", 0.0) + time.perf_counter() - started

    # -- discovery and planning ----------------------------------------------------------
    def _trusted(self, known: dict[str, RegisteredDocument]) -> dict[str, RegisteredDocument]:
        """The registry, unless the store is empty while the registry is not (the engine
        or collection was switched without ``enclave migrate``, or the store folder was
        deleted): then every file is ingested again instead of skipped as unchanged."""
        if known and self._c.store.info().points == 0:
            logger.warning(
                "the registry lists %d documents but collection %r is empty; ingesting them again",
                len(known),
                self._c.collection,
            )
            return {}
        return known

    def _plan_job(
        self,
        paths: Sequence[str | Path],
        rules: RuleSet,
        tags: Sequence[str] | None,
        *,
        trusted: bool | None,
    ) -> Plan:
        """The one way a job is decided, for a run here and for queued tasks: the files
        found, compared with the registry (all of it when ``trusted`` is None and the
        store is not empty, none of it when False), and the registered documents inside an
        ingested folder whose file is gone."""
        started = time.perf_counter()
        report = IngestReport()
        files, scopes = discover(paths, self._settings.follow_links, report.failed)
        known = {r.document.source: r for r in self._c.registry.all()}
        compared = self._trusted(known) if trusted is None else (known if trusted else {})
        plan = Plan(report, [], [], [])
        self._plan(files, compared, rules, _clean(tags) if tags is not None else None, plan)
        present = {source_of(f) for f in files}
        prefixes = tuple(source_of(scope).rstrip("/") + "/" for scope in scopes)
        plan.deletions = [
            record.document.doc_id
            for source, record in known.items()
            if source not in present and source.startswith(prefixes)
        ]
        report.stage_seconds["scan"] = time.perf_counter() - started
        return plan

    def _plan(
        self,
        files: Iterable[Path],
        known: dict[str, RegisteredDocument],
        rules: RuleSet,
        explicit_tags: tuple[str, ...] | None,
        plan: Plan,
    ) -> None:
        """Sort ``files`` into the plan: new, changed, new access only, unchanged."""
        limit = int(self._settings.max_file_mb * 1024 * 1024)
        report = plan.report
        admin_only: list[str] = []
        for path in files:
            source = source_of(path)
            try:
                mime_type = mime_type_for(path)
                stat = path.stat()
                if stat.st_size > limit:
                    raise FileTooLargeError(
                        f"file is {stat.st_size / 1048576:.1f} MB, over the "
                        f"{self._settings.max_file_mb:g} MB limit (ENCLAVE_INGEST__MAX_FILE_MB)"
                    )
                content_hash = hash_file(path)
            except DocumentError as exc:
                report.failed.append(Failure(source, str(exc)))
                continue
            except OSError as exc:
                report.failed.append(Failure(source, os_reason(exc, path)))
                continue
            previous = known.get(source)
            groups = rules.groups_for(source)
            if not groups:
                admin_only.append(source)
            tags = explicit_tags
            if tags is None:
                tags = previous.document.tags if previous else ()
            document = Document(
                doc_id=doc_id_for(source),
                source=source,
                title=previous.document.title if previous else path.stem,
                content_hash=content_hash,
                modified_at=stat.st_mtime,
                mime_type=mime_type,
                size_bytes=stat.st_size,
                groups=groups,
                tags=tags,
            )
            if previous is None:
                plan.files.append(_Planned(path, document, "add"))
            elif previous.document.content_hash != content_hash:
                plan.files.append(_Planned(path, document, "update"))
            elif (previous.document.groups, previous.document.tags) != (groups, tags):
                plan.access.append(document)
            else:
                report.mark(source, "unchanged")
        report.warn_admin_only(admin_only)

    def delete(self, doc_id: str, *, store: VectorStore | None = None) -> RegisteredDocument | None:
        """Remove a document from ``store`` (default: the container's): chunks first,
        registry row last (a crash in between is repaired by deleting again); an uploaded
        original goes with it. The registry's record of it, if it had one."""
        record = self._c.registry.get(doc_id)
        (store or self._c.store).delete_document(doc_id)
        self._c.registry.remove(doc_id)
        if record is not None:
            self.discard_upload(Path(record.document.source))
        return record

    def discard_upload(self, path: Path) -> None:
        """Remove an uploaded original (one under ``<data_dir>/uploads``), and its upload's
        folder and access rule once the folder is empty. Other paths are left alone."""
        uploads = self._c.settings.uploads_dir
        if not path.is_relative_to(uploads) or path.parent == uploads:
            return
        folder = uploads / path.relative_to(uploads).parts[0]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        prefix = source_of(folder)
        if any(rule.prefix == prefix for rule in self._c.registry.rules()):
            self._c.registry.remove_rule(prefix, "upload removed", 0)

    # -- processing ------------------------------------------------------------------------
    def _process(
        self, planned: list[_Planned], report: IngestReport, progress: ProgressListener | None
    ) -> None:
        self._c.store.ensure_collection(self._c.collection_spec())
        chunker = self._chunker()
        batch_size = self._write_size()
        if progress is not None:
            progress.start(len(planned))  # after the model load: the bar shows real work
        parsed_queue: queue.Queue[Any] = queue.Queue(maxsize=self._settings.queue_docs)
        stop = threading.Event()
        parse_seconds = [0.0]
        producer = threading.Thread(
            target=self._produce,
            args=(planned, chunker, parsed_queue, stop, parse_seconds),
            name="enclave-parse",
            daemon=True,
        )
        producer.start()
        pending: list[Chunk] = []
        open_docs: list[tuple[_Parsed, int]] = []  # (document, cumulative chunk end)
        queued = written = 0
        timings = {"embed": 0.0, "upsert": 0.0}

        def write(batch: list[Chunk]) -> None:
            nonlocal written
            t0 = time.perf_counter()
            points = self._embed(batch)
            t1 = time.perf_counter()
            self._c.store.upsert(points)
            timings["embed"] += t1 - t0
            timings["upsert"] += time.perf_counter() - t1
            written += len(batch)
            if progress is not None:
                progress.advance(chunks=len(batch))
            while open_docs and open_docs[0][1] <= written:
                item, _ = open_docs.pop(0)
                self._finish(item, report)

        try:
            while (item := parsed_queue.get()) is not _DONE:
                if progress is not None:
                    progress.advance(files=1)  # files parsed; chunks count as written
                if item.error is not None:
                    report.failed.append(Failure(item.planned.document.source, item.error))
                    continue
                queued += len(item.chunks)
                open_docs.append((item, queued))
                pending.extend(item.chunks)
                while len(pending) >= batch_size:
                    batch, pending = pending[:batch_size], pending[batch_size:]
                    write(batch)
            if pending:
                write(pending)
        finally:
            stop.set()
            while producer.is_alive():
                try:
                    parsed_queue.get(timeout=0.1)
                except queue.Empty:
                    continue
            producer.join()
        report.stage_seconds.update(timings)
        report.stage_seconds["parse_chunk"] = parse_seconds[0]

    def _chunker(self) -> Chunker:
        embedder = self._c.embedder
        return Chunker(
            embedder.count_tokens,
            embedder.max_tokens,
            self._settings.chunk_tokens,
            self._settings.chunk_overlap,
        )

    def _write_size(self) -> int:
        """Chunks per store write: several model batches, spanning documents."""
        return self._c.settings.embedder.batch_size * _BATCHES_PER_WRITE

    def _embed(self, batch: Sequence[Chunk]) -> list[EmbeddedChunk]:
        texts = [c.embedding_text for c in batch]
        dense = self._c.embedder.embed_documents(texts)
        sparse = self._c.sparse.encode_documents(texts)
        return [EmbeddedChunk(c, d, s) for c, d, s in zip(batch, dense, sparse, strict=True)]

    def _produce(
        self,
        planned: list[_Planned],
        chunker: Chunker,
        out: queue.Queue[Any],
        stop: threading.Event,
        parse_seconds: list[float],
    ) -> None:
        try:
            for plan in planned:
                if stop.is_set():
                    return
                started = time.perf_counter()
                parsed = self._parse_one(plan, chunker)
                parse_seconds[0] += time.perf_counter() - started  # not the wait in put()
                out.put(parsed)
        finally:
            out.put(_DONE)

    def _parse_one(self, plan: _Planned, chunker: Chunker) -> _Parsed:
        try:
            parsed = self._parser.parse(plan.path)
            document = replace(plan.document, title=parsed.title)
            chunks = chunker.chunk(parsed, document)
        except DocumentError as exc:
            return _Parsed(plan, error=str(exc))
        except OSError as exc:
            return _Parsed(plan, error=os_reason(exc))
        except Exception as exc:  # one bad file never stops a job
            logger.exception("unexpected error parsing %s", plan.path)
            return _Parsed(plan, error=f"unexpected error: {exc.__class__.__name__}: {exc}")
        if not chunks:
            return _Parsed(plan, error="no extractable text")
        return _Parsed(plan, document=document, chunks=chunks)

    def _finish(
        self, item: _Parsed, report: IngestReport, store: VectorStore | None = None
    ) -> None:
        assert item.document is not None
        document = item.document
        (store or self._c.store).delete_document(document.doc_id, keep_hash=document.content_hash)
        self._c.registry.put(document, len(item.chunks))
        report.mark(document.source, "added" if item.planned.kind == "add" else "updated")
        report.chunks_written += len(item.chunks)


def _clean(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in values if v.strip()}))
