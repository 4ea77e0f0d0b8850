"""OpenAICompatibleGenerator against a real vLLM server (SmolLM2-135M, 2048-token context).

Run with `make test-vllm`; skipped otherwise (see conftest.py).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from backends.generators import OpenAICompatibleGenerator
from core.errors import ConfigError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Usage
from serving.answers import complete

from .conftest import CONTEXT_WINDOW, SERVED_NAME

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Greedy decoding of this prompt runs far past 32 tokens, so both the streamed and the
# plain request stop at max_tokens and their counts can be compared exactly.
LONG_ANSWER = [{"role": "user", "content": "Count from 1 to 200, separated by commas."}]


def _root(vllm_url: str) -> str:
    """The server root (``/health``, ``/metrics``, ``/tokenize``) from the API root."""
    return vllm_url.rstrip("/").removesuffix("/v1")


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(url, json=body, timeout=120, trust_env=False)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _running_requests(vllm_url: str) -> float:
    """vLLM's ``vllm:num_requests_running`` gauge, summed over engines."""
    text = httpx.get(_root(vllm_url) + "/metrics", timeout=10, trust_env=False).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_running")
    ]
    assert values, "vLLM's /metrics has no vllm:num_requests_running"
    return sum(values)


def test_check_passes_when_the_server_serves_the_model(
    generator: OpenAICompatibleGenerator,
) -> None:
    generator.check()


def test_check_names_the_served_models_when_the_name_is_wrong(vllm_url: str) -> None:
    gen = OpenAICompatibleGenerator(
        ModelSettings(name="no-such-model", base_url=vllm_url, context_window=CONTEXT_WINDOW),
        LLMSettings(),
    )
    try:
        with pytest.raises(ConfigError) as info:
            gen.check()
    finally:
        gen.close()
    message = str(info.value)
    assert SERVED_NAME in message
    assert "no-such-model" in message
    assert vllm_url.rstrip("/") in message


def test_check_explains_a_base_url_without_v1(vllm_url: str) -> None:
    gen = OpenAICompatibleGenerator(
        ModelSettings(name=SERVED_NAME, base_url=_root(vllm_url), context_window=CONTEXT_WINDOW),
        LLMSettings(),
    )
    try:
        with pytest.raises(ConfigError, match="HTTP 404") as info:
            gen.check()
    finally:
        gen.close()
    assert "/v1" in str(info.value)


def test_stream_yields_pieces_then_the_servers_usage(
    generator: OpenAICompatibleGenerator, vllm_url: str
) -> None:
    max_tokens = 32
    items = list(generator.stream(LONG_ANSWER, max_tokens=max_tokens, temperature=0.0))

    pieces, usage = items[:-1], items[-1]
    assert isinstance(usage, Usage)
    assert all(isinstance(p, str) and p for p in pieces), "only text before the Usage"
    assert len(pieces) > 1
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.completion_tokens >= len(pieces)  # every piece is at least one token
    assert usage.prompt_tokens > 0

    # the counts are vLLM's own, not the generator's estimate: the prompt as vLLM
    # tokenizes it, and the same request without streaming
    tokenized = _post(
        _root(vllm_url) + "/tokenize",
        {"model": SERVED_NAME, "messages": LONG_ANSWER, "add_generation_prompt": True},
    )
    assert usage.prompt_tokens == tokenized["count"]
    plain = _post(
        vllm_url.rstrip("/") + "/chat/completions",
        {
            "model": SERVED_NAME,
            "messages": LONG_ANSWER,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        },
    )
    assert plain["choices"][0]["finish_reason"] == "length"
    assert usage == Usage(plain["usage"]["prompt_tokens"], plain["usage"]["completion_tokens"])


def test_complete_returns_the_whole_reply(generator: OpenAICompatibleGenerator) -> None:
    reply = complete(generator, LONG_ANSWER, max_tokens=16)
    assert reply.strip()


def test_closing_the_stream_aborts_the_request_and_the_next_one_works(
    generator: OpenAICompatibleGenerator, vllm_url: str
) -> None:
    # at ~40 tokens/s, 1500 tokens keep vLLM busy for half a minute unless it aborts
    stream = generator.stream(LONG_ANSWER, max_tokens=1500, temperature=0.0)
    first = next(stream)
    assert isinstance(first, str)
    stream.close()

    deadline = time.monotonic() + 10
    while _running_requests(vllm_url) > 0:
        assert time.monotonic() < deadline, "vLLM still generates for a closed stream"
        time.sleep(0.2)

    generator.check()
    items = list(generator.stream(LONG_ANSWER, max_tokens=8, temperature=0.0))
    assert isinstance(items[-1], Usage)
    assert items[-1].completion_tokens > 0
    assert any(isinstance(p, str) and p for p in items[:-1])


def test_a_prompt_over_the_context_window_is_refused_quickly(
    generator: OpenAICompatibleGenerator,
) -> None:
    too_long = [{"role": "user", "content": "hello " * 3000}]  # ~3000 tokens > 2048
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        list(generator.stream(too_long, max_tokens=16))
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "HTTP 400" in message
    # vLLM's own words, out of its JSON error body
    assert f"maximum context length is {CONTEXT_WINDOW} tokens" in message
    assert '"error"' not in message

    # the server is fine afterwards
    assert complete(generator, LONG_ANSWER, max_tokens=4)
