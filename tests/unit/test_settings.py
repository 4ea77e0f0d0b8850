from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings, settings_table


def test_nested_environment_variables_override_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENCLAVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ENCLAVE_INGEST__CHUNK_TOKENS", "120")
    monkeypatch.setenv("ENCLAVE_INGEST__FOLLOW_LINKS", "true")
    monkeypatch.setenv("ENCLAVE_STORE__API_KEY", "s3cret")
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.ingest.chunk_tokens == 120
    assert s.ingest.follow_links is True
    assert s.store.engine == "edge"
    assert s.store_path == tmp_path / "edge"
    monkeypatch.setenv("ENCLAVE_STORE__ENGINE", "local")
    assert Settings().store_path == tmp_path / "qdrant"
    assert s.database_url == f"sqlite:///{(tmp_path / 'enclave.db').resolve()}"
    assert "s3cret" not in repr(s)  # secrets never show up in logs or reprs


def test_overlap_must_be_smaller_than_chunk_size() -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(ingest={"chunk_tokens": 64, "chunk_overlap": 64})


@pytest.mark.parametrize("removed", ["DEFAULT_GROUPS", "FOLDER_GROUPS"])
def test_implicit_group_settings_are_refused_with_the_way_to_rules(
    monkeypatch: pytest.MonkeyPatch, removed: str
) -> None:
    # groups come from access rules only: an old setting that gave groups implicitly must
    # not be ignored silently (documents would quietly become admin-only)
    monkeypatch.setenv(f"ENCLAVE_INGEST__{removed}", '["everyone"]')
    with pytest.raises(ValidationError, match=f"ENCLAVE_INGEST__{removed}") as err:
        Settings()
    assert "enclave access set" in str(err.value)


def test_configuration_table_lists_every_setting_with_a_description() -> None:
    table = settings_table()
    for env in ("ENCLAVE_DATA_DIR", "ENCLAVE_STORE__URL", "ENCLAVE_INGEST__MAX_FILE_MB"):
        assert f"`{env}`" in table
    for line in table.splitlines()[2:]:
        assert line.rstrip(" |").split("|")[-1].strip(), f"no description: {line}"


def test_readme_configuration_table_is_up_to_date() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "regenerate it with `python -m core.settings`"
