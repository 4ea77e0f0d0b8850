"""Incremental sync on the real stack: add, skip, replace, delete, re-run after a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends.container import Container, build_container
from backends.sql.registry import RegisteredDocument
from core.errors import InputError
from core.protocols import Embedder
from core.settings import Settings
from ingest.discover import doc_id_for, source_of
from ingest.parse import Parser
from ingest.pipeline import Ingestor
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


def groups_by_name(container: Container) -> dict[str, tuple[str, ...]]:
    return {Path(r.document.source).name: r.document.groups for r in container.registry.all()}


def test_groups_come_from_access_rules_and_a_parent_sync_keeps_them(
    container: Container, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path / "kb")
    Ingestor(container).run([kb / "hr"], groups=["hr"])
    # the routine sync of the parent folder, without --groups (compose's ingest job)
    report = Ingestor(container).run([kb])
    assert groups_by_name(container) == {
        "leave.md": (),  # no rule covers it: admins only (fail closed), with a warning
        "security.docx": (),
        "expenses.pdf": ("hr",),
        "travel.md": ("hr",),
    }
    assert report.admin_only == 2
    assert "enclave access set" in report.warnings[0]
    assert "leave.md" in report.warnings[0] or "security.docx" in report.warnings[0]
    for chunk in _chunks_of(container, kb / "hr" / "travel.md"):
        assert chunk.groups == ("hr",)  # the store's payload too, not only the registry
    for chunk in _chunks_of(container, kb / "leave.md"):
        assert chunk.groups == ()

    # a rule on the parent shares the rest; the more specific hr rule still wins
    change = Ingestor(container).access.set_rule(kb, ["staff"], "test")
    assert (change.before, change.after, change.documents) == (None, ("staff",), 2)
    assert groups_by_name(container) == {
        "leave.md": ("staff",),
        "security.docx": ("staff",),
        "expenses.pdf": ("hr",),
        "travel.md": ("hr",),
    }
    assert Ingestor(container).run([kb]).warnings == []

    # --groups on a file records its rule and changes access without re-embedding; tags
    # given once stay until other tags are given
    report = Ingestor(container).run([kb / "leave.md"], groups=["board", "hr"], tags=["x"])
    assert (report.updated, report.chunks_written) == (1, 0)
    Ingestor(container).run([kb])
    for chunk in _chunks_of(container, kb / "leave.md"):
        assert (chunk.groups, chunk.tags) == (("board", "hr"), ("x",))

    # removing a rule falls back to the next one up; every change is in the history
    Ingestor(container).access.remove_rule(str(kb / "hr"), "test")
    assert groups_by_name(container)["travel.md"] == ("staff",)
    history = container.registry.access_history()
    assert [(h["prefix"], h["before"], h["after"]) for h in history] == [
        (source_of((kb / "hr").resolve()), ["hr"], None),
        (source_of((kb / "leave.md").resolve()), None, ["board", "hr"]),
        (source_of(kb.resolve()), None, ["staff"]),
        (source_of((kb / "hr").resolve()), None, ["hr"]),
    ]
    assert (history[0]["actor"], history[0]["documents"]) == ("test", 2)


def test_a_group_name_no_key_could_hold_is_refused(container: Container, tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb")
    with pytest.raises(InputError, match="'hr team'"):
        Ingestor(container).run([kb], groups=["hr team"])
    assert container.registry.all() == []
    assert container.registry.rules() == []


def test_symbolic_links_never_carry_another_folders_file(
    embedder: Embedder, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path / "kb")
    (kb / "dev").mkdir()
    write_md(kb / "dev" / "build.md", sample_spec("security"))
    (kb / "dev" / "pay.md").symlink_to(kb / "hr" / "travel.md")  # an hr file, from dev
    outside = tmp_path / "outside"
    write_md(outside / "elsewhere.md", sample_spec("leave"))
    (kb / "dev" / "out.md").symlink_to(outside / "elsewhere.md")
    for follow in (False, True):
        settings = Settings(data_dir=tmp_path / f"data-{follow}", ingest={"follow_links": follow})
        container = build_container(settings, embedder=embedder)
        try:
            ingestor = Ingestor(container)
            ingestor.run([kb / "hr"], groups=["hr"])
            report = ingestor.run([kb / "dev"], groups=["dev"])
            failed = {Path(f.source).name: f.reason for f in report.failed}
            assert "symbolic link" in failed["pay.md"]  # never ingested with dev's groups
            assert "symbolic link" in failed["out.md"]
            # naming the link itself does not re-group the hr file either
            named = ingestor.run([kb / "dev" / "pay.md"], groups=["dev"])
            if not follow:
                assert "symbolic link" in named.failed[0].reason
            assert groups_by_name(container) == {
                "expenses.pdf": ("hr",),
                "travel.md": ("hr",),
                "build.md": ("dev",),
            }, follow
            for record in container.registry.all():
                assert "/dev/pay.md" not in record.document.source
            # a parent sync: with links followed, a link inside the folder leads to the
            # target, ingested once under its own rules (hr), never under the link's
            report = ingestor.run([kb])
            assert groups_by_name(container)["travel.md"] == ("hr",)
            sources = [r.document.source for r in container.registry.all()]
            assert len(sources) == len(set(sources)) == 5
            assert ("out.md" in {Path(f.source).name for f in report.failed}) is True
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
