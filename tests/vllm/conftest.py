"""Tests against a real vLLM server: `make test-vllm` starts one and sets TEST_VLLM_URL.

Without TEST_VLLM_URL (a plain `pytest`) every test here is skipped. The variable has
no ENCLAVE_ prefix because tests/conftest.py removes all ENCLAVE_* variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from backends.generators import OpenAICompatibleGenerator
from core.settings import LLMSettings, ModelSettings

SERVED_NAME = "smollm2-135m-instruct"  # --served-model-name in tests/vllm/run.sh
CONTEXT_WINDOW = 2048  # --max-model-len in tests/vllm/run.sh


@pytest.fixture(scope="session")
def vllm_url() -> str:
    """The vLLM server's OpenAI API root, e.g. ``http://127.0.0.1:8000/v1``."""
    url = os.environ.get("TEST_VLLM_URL")
    if not url:
        pytest.skip("needs a real vLLM server: run `make test-vllm` (TEST_VLLM_URL is not set)")
    return url


@pytest.fixture
def generator(vllm_url: str) -> Iterator[OpenAICompatibleGenerator]:
    gen = OpenAICompatibleGenerator(
        ModelSettings(name=SERVED_NAME, base_url=vllm_url, context_window=CONTEXT_WINDOW),
        LLMSettings(),
    )
    yield gen
    gen.close()
