"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.make_files import sample_spec, write_docx, write_md


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """A small knowledge base: a Markdown leave policy and a DOCX security policy."""
    folder = tmp_path / "kb"
    write_md(folder / "leave.md", sample_spec("leave"))
    write_docx(folder / "security.docx", sample_spec("security"))
    return folder
