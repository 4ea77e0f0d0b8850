"""Shared fixtures: real bundled embedder (loaded once), real embedded Qdrant per test."""

from __future__ import annotations

import os

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}.items():
    os.environ[_key] = _value
for _key in [k for k in os.environ if k.startswith("ENCLAVE_")]:
    del os.environ[_key]

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from backends.container import Container, build_container  # noqa: E402
from core.protocols import Embedder  # noqa: E402
from core.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    from backends.embedders import SentenceTransformerEmbedder
    from core.settings import EmbedderSettings

    return SentenceTransformerEmbedder(EmbedderSettings())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def container(settings: Settings, embedder: Embedder) -> Iterator[Container]:
    c = build_container(settings, embedder=embedder)
    yield c
    c.close()
