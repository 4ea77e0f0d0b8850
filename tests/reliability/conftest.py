"""Fixtures of the reliability suite: the deterministic extractive LLM as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import extractive_llm as llm


@pytest.fixture(scope="session")
def extractive_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The OpenAI API root of ``tests/extractive_llm.py`` running on a free loopback port.
    It quotes the context sentence closest to the question, so whatever reaches the prompt
    shows in the answer."""
    with llm.running(tmp_path_factory.mktemp("extractive-llm") / "llm.log") as url:
        yield url
