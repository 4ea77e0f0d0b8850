"""Bad files are reported one by one with a clear reason; the rest is ingested."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.container import Container, build_container
from core.protocols import Embedder
from core.settings import Settings
from ingest.parse import Parser
from ingest.pipeline import Ingestor
from tests.data.make_files import BAD_FILES, sample_spec, write_big_file, write_md

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED_REASONS = {
    "corrupt.pdf": "corrupt",
    "empty.txt": "empty file",
    "garbage.docx": "not a valid DOCX",
    "protected.pdf": "password-protected",
    "latin1.txt": "not UTF-8",
    "binary.txt": "binary content",
    "image.xyz": "unsupported file type .xyz",
    "big.txt": "over the 1 MB limit",
}


def test_each_bad_file_is_reported_and_the_good_ones_are_ingested(
    embedder: Embedder, tmp_path: Path
) -> None:
    kb = tmp_path / "kb"
    for name, make in BAD_FILES.items():
        make(kb / name)
    write_big_file(kb / "big.txt", 1.5)
    write_md(kb / "good.md", sample_spec("leave"))
    write_md(kb / "also-good.md", sample_spec("travel"))
    missing = tmp_path / "no-such-folder"
    container = build_container(
        Settings(data_dir=tmp_path / "data", ingest={"max_file_mb": 1}), embedder=embedder
    )
    try:
        report = Ingestor(container).run([kb, missing])
        reasons = {Path(f.source).name: f.reason for f in report.failed}
        assert report.added == 2
        assert set(reasons) == {*EXPECTED_REASONS, "no-such-folder"}
        for name, expected in EXPECTED_REASONS.items():
            assert expected in reasons[name], f"{name}: {reasons[name]}"
        assert "does not exist" in reasons["no-such-folder"]
        for reason in reasons.values():
            assert "Traceback" not in reason
        # failures are retried (and reported) on the next run, never recorded as done
        again = Ingestor(container).run([kb])
        assert again.unchanged == 2
        assert len(again.failed) == len(EXPECTED_REASONS)
    finally:
        container.close()


def test_legacy_encodings_are_decoded_when_allowed(embedder: Embedder, tmp_path: Path) -> None:
    BAD_FILES["latin1.txt"](tmp_path / "kb" / "latin1.txt")
    container = build_container(
        Settings(data_dir=tmp_path / "data", ingest={"detect_encoding": True}), embedder=embedder
    )
    try:
        report = Ingestor(container).run([tmp_path / "kb"])
        assert (report.added, report.failed) == (1, [])
        (record,) = container.registry.all()
        text = " ".join(c.text for c in container.store.chunks(record.document.doc_id))
        assert "café" in text.lower()
    finally:
        container.close()


def test_a_file_that_disappears_mid_run_is_reported(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = tmp_path / "kb"
    write_md(kb / "a.md", sample_spec("leave"))
    write_md(kb / "b.md", sample_spec("travel"))
    real_parse = Parser.parse

    def vanish_then_parse(self: Parser, path: Path) -> object:
        if path.name == "a.md":
            path.unlink()
        return real_parse(self, path)

    monkeypatch.setattr(Parser, "parse", vanish_then_parse)
    report = Ingestor(container).run([kb])
    assert report.added == 1
    (failure,) = report.failed
    assert failure.source.endswith("a.md")
    assert "disappeared" in failure.reason
