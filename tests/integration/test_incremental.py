"""Incremental sync on the real stack: add, skip, replace, delete, re-run after a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends.container import Container, build_container
from backends.registry import RegisteredDocument
from core.protocols import Embedder
from core.settings import Settings
from ingest.parse import Parser
from ingest.pipeline import Ingestor, doc_id_for, source_of
from tests.data.make_files import SAMPLE_TOPICS, sample_spec, write_docx, write_md, write_pdf

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_kb(folder: Path) -> Path:
    write_md(folder / "leave.md", sample_spec("leave"))
    write_docx(folder / "security.docx", sample_spec("security"))
    write_pdf(folder / "hr" / "expenses.pdf", sample_spec("expenses"))
    write_md(folder / "hr" / "travel.md", sample_spec("travel"))
    return folder


def registered(container: Container, path: Path) -> RegisteredDocument | None:
    return container.registry.get(doc_id_for(source_of(path.resolve())))


def state(container: Container) -> dict[str, Any]:
    """Everything a user could observe: registry rows and every chunk's payload."""
    docs = {}
    for record in container.registry.all():
        d = record.document
        chunks = container.store.chunks(d.doc_id)
        docs[d.source] = {
            "hash": d.content_hash,
            "groups": d.groups,
            "chunks": record.chunks,
            "points": [(c.id, c.text, c.groups, c.content_hash) for c in chunks],
        }
    return {"docs": docs, "points": container.store.count()}


def test_unchanged_changed_and_removed_files(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = make_kb(tmp_path / "kb")
    first = Ingestor(container).run([kb])
    assert (first.added, first.updated, first.unchanged, first.deleted) == (4, 0, 0, 0)
    assert first.chunks_written == container.store.count() > 0

    # unchanged: skipped without parsing or embedding
    def refuse(*_: object) -> None:
        raise AssertionError("an unchanged file was parsed")

    with monkeypatch.context() as m:
        m.setattr(Parser, "parse", refuse)
        second = Ingestor(container).run([kb])
    assert (second.added, second.updated, second.unchanged, second.chunks_written) == (0, 0, 4, 0)

    # changed: old chunks replaced, none left over
    before = container.store.count()
    leave = sample_spec("leave")
    changed = type(leave)(leave.title, leave.sections[:1], ())  # shorter document
    write_md(kb / "leave.md", changed)
    third = Ingestor(container).run([kb])
    assert (third.added, third.updated, third.unchanged) == (0, 1, 3)
    record = registered(container, kb / "leave.md")
    assert record is not None
    chunks = container.store.chunks(record.document.doc_id)
    assert {c.content_hash for c in chunks} == {record.document.content_hash}
    assert len(chunks) == record.chunks
    assert not any("10 working days" in c.text for c in chunks)  # the removed section
    assert container.store.count() < before

    # removed from the folder: its chunks deleted
    (kb / "hr" / "travel.md").unlink()
    fourth = Ingestor(container).run([kb])
    assert (fourth.deleted, fourth.unchanged) == (1, 3)
    assert registered(container, kb / "hr" / "travel.md") is None
    assert all("travel" not in c.source for c in _all_chunks(container))
    assert sum(r.chunks for r in container.registry.all()) == container.store.count()


def test_ingesting_one_file_never_deletes_its_siblings(
    container: Container, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path / "kb")
    Ingestor(container).run([kb])
    report = Ingestor(container).run([kb / "leave.md"])
    assert (report.unchanged, report.deleted) == (1, 0)
    assert len(container.registry.all()) == 4


def test_groups_from_flag_folder_mapping_and_default(embedder: Embedder, tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb")
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest={"folder_groups": {str(kb / "hr"): ["hr"]}, "default_groups": ["staff"]},
    )
    container = build_container(settings, embedder=embedder)
    try:
        Ingestor(container).run([kb])
        groups = {Path(r.document.source).name: r.document.groups for r in container.registry.all()}
        assert groups == {
            "leave.md": ("staff",),
            "security.docx": ("staff",),
            "expenses.pdf": ("hr",),
            "travel.md": ("hr",),
        }
        # re-running with --groups changes access without re-embedding
        report = Ingestor(container).run([kb / "leave.md"], groups=["board", "hr"], tags=["x"])
        assert (report.updated, report.chunks_written) == (1, 0)
        for chunk in _chunks_of(container, kb / "leave.md"):
            assert chunk.groups == ("board", "hr")
            assert chunk.tags == ("x",)
    finally:
        container.close()


def test_dry_run_reports_without_writing(container: Container, tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb")
    report = Ingestor(container).run([kb], dry_run=True)
    assert (report.added, report.chunks_written, report.dry_run) == (4, 0, True)
    assert container.registry.all() == []


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so nothing in the job may swallow it."""


@pytest.mark.parametrize("fail_at_upsert", [1, 2, 3])
def test_a_run_interrupted_half_way_and_repeated_equals_one_clean_run(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at_upsert: int
) -> None:
    kb = make_kb(tmp_path / "kb")
    clean = build_container(Settings(data_dir=tmp_path / "clean"), embedder=embedder)
    try:
        Ingestor(clean).run([kb])
        expected = state(clean)
    finally:
        clean.close()

    # small writes (4 chunks) so the crash lands between and inside documents
    settings = Settings(data_dir=tmp_path / "crashed", embedder={"batch_size": 1})
    container = build_container(settings, embedder=embedder)
    try:
        calls = {"n": 0}
        real_upsert = container.store.upsert

        def crashing_upsert(points: Any) -> None:
            calls["n"] += 1
            if calls["n"] == fail_at_upsert:
                real_upsert(points[: len(points) // 2])  # half a batch reached the store
                raise Interrupted
            real_upsert(points)

        monkeypatch.setattr(container.store, "upsert", crashing_upsert)
        with pytest.raises(Interrupted):
            Ingestor(container).run([kb])
        monkeypatch.undo()
        Ingestor(container).run([kb])
        assert state(container) == expected  # ids depend on doc, content, index; not batching
    finally:
        container.close()


def test_a_changed_file_interrupted_mid_update_ends_with_only_the_new_version(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = make_kb(tmp_path / "kb")
    Ingestor(container).run([kb])
    write_md(kb / "leave.md", sample_spec(SAMPLE_TOPICS[-1]))
    real_delete = container.store.delete_document

    def crash(*_: Any, **__: Any) -> None:
        raise Interrupted

    monkeypatch.setattr(container.store, "delete_document", crash)
    with pytest.raises(Interrupted):
        Ingestor(container).run([kb])
    monkeypatch.setattr(container.store, "delete_document", real_delete)
    report = Ingestor(container).run([kb])
    assert report.updated == 1
    chunks = _chunks_of(container, kb / "leave.md")
    record = registered(container, kb / "leave.md")
    assert record is not None
    assert {c.content_hash for c in chunks} == {record.document.content_hash}
    assert sum(r.chunks for r in container.registry.all()) == container.store.count()


def _chunks_of(container: Container, path: Path) -> list[Any]:
    record = registered(container, path)
    assert record is not None
    return container.store.chunks(record.document.doc_id)


def _all_chunks(container: Container) -> list[Any]:
    return [c for r in container.registry.all() for c in container.store.chunks(r.document.doc_id)]


def test_progress_counts_every_planned_file_and_written_chunk(
    container: Container, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path / "kb")
    (kb / "broken.docx").write_bytes(b"not a zip")

    class Recorder:
        def __init__(self) -> None:
            self.total = -1
            self.files = 0
            self.chunks = 0

        def start(self, total_files: int) -> None:
            self.total = total_files

        def advance(self, files: int = 0, chunks: int = 0) -> None:
            self.files += files
            self.chunks += chunks

    recorder = Recorder()
    report = Ingestor(container).run([kb], progress=recorder)
    assert recorder.total == recorder.files == 5  # the broken file is planned, then fails
    assert recorder.chunks == report.chunks_written > 0
    assert len(report.failed) == 1
