"""Fixtures of the reliability suite: the deterministic extractive LLM as a real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import LLMSettings, ModelSettings
from tests.processes import free_port, stop, wait_ok


@pytest.fixture(scope="session")
def extractive_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The OpenAI API root of ``tests/extractive_llm.py`` running on a free loopback port.
    It quotes the context sentence closest to the question, so whatever reaches the prompt
    shows in the answer."""
    log = tmp_path_factory.mktemp("extractive-llm") / "llm.log"
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.extractive_llm", "--port", str(port)],
            stdout=out,
            stderr=out,
            cwd=Path(__file__).resolve().parents[2],
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ok(process, f"{url}/models", log, limit_s=120)
        yield url
    finally:
        stop(process)


def extractive_llm_settings(url: str) -> LLMSettings:
    """Two models (``quick``, ``thorough``) on the extractive server, failing fast."""
    return LLMSettings(
        models=[
            ModelSettings(name="quick", base_url=url, role="small"),
            ModelSettings(name="thorough", base_url=url, role="large"),
        ],
        retries=0,
        connect_timeout_s=2,
        timeout_s=30,
    )
