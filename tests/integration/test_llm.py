"""The generator against a real llama.cpp server (SmolLM2), and the embedded server's
supervision and bundled-model assembly."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import llama_server
from backends.generators import OpenAICompatibleGenerator
from backends.llama_server import EmbeddedLlamaServer, assemble_qwen, resolve_gguf
from core.errors import ConfigError, LLMUnavailableError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Usage
from serving.answers import complete
from tests.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLlamaServer]:
    root = tmp_path_factory.mktemp("llm")
    name, gguf = resolve_gguf("smollm2-135m", root / "models")
    srv = EmbeddedLlamaServer(
        gguf, name, context_window=1024, threads=None, log_path=root / "llama.log"
    )
    srv.start()
    yield srv
    srv.stop()


def generator(
    url: str, name: str = "smollm2-135m-instruct", **llm: object
) -> OpenAICompatibleGenerator:
    return OpenAICompatibleGenerator(
        ModelSettings(name=name, base_url=url, context_window=1024),  # type: ignore[call-arg]
        LLMSettings(**llm),  # type: ignore[arg-type]
    )


def test_check_passes_for_the_served_model_and_names_what_is_served(
    server: EmbeddedLlamaServer,
) -> None:
    with generator(server.base_url) as gen:
        gen.check()
    with (
        generator(server.base_url, "qwen-7b") as wrong,
        pytest.raises(ConfigError, match=r"serves \['smollm2-135m-instruct'\], not 'qwen-7b'"),
    ):
        wrong.check()


def test_stream_yields_text_then_one_usage(server: EmbeddedLlamaServer) -> None:
    with generator(server.base_url) as gen:
        pieces = list(gen.stream(QUESTION, max_tokens=16, temperature=0.0))
    *texts, usage = pieces
    assert len(texts) > 1
    assert all(isinstance(t, str) for t in texts)
    assert isinstance(usage, Usage)
    assert 0 < usage.completion_tokens <= 16
    assert usage.prompt_tokens > 0


def test_concurrent_answers_queue_instead_of_cutting_each_other_off(
    server: EmbeddedLlamaServer,
) -> None:
    """llama_cpp.server by default ends the answer it streams (empty, with [DONE]) when
    another request arrives; the embedded server is started to queue them instead."""
    from concurrent.futures import ThreadPoolExecutor

    def answer(_: int) -> str:
        with generator(server.base_url) as gen:
            return "".join(p for p in gen.stream(QUESTION, max_tokens=12) if isinstance(p, str))

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(answer, range(3)))
    assert all(a.strip() for a in answers), answers


def test_closing_a_stream_early_leaves_the_server_usable(server: EmbeddedLlamaServer) -> None:
    with generator(server.base_url) as gen:
        stream = gen.stream(QUESTION, max_tokens=200)
        assert isinstance(next(stream), str)
        stream.close()
        assert complete(gen, QUESTION, max_tokens=8).strip()


def test_a_prompt_over_the_window_is_refused_clearly(server: EmbeddedLlamaServer) -> None:
    # llama.cpp answers a streaming request whose prompt is too long with an empty 200
    # (vLLM with a 400): both are a ModelError naming the context window
    huge = [{"role": "user", "content": "word " * 3000}]
    with (
        generator(server.base_url) as gen,
        pytest.raises(ModelError, match="context window"),
    ):
        list(gen.stream(huge, max_tokens=8))


def test_an_unreachable_server_is_llm_unavailable_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with generator(f"http://127.0.0.1:{port}/v1", retries=1, connect_timeout_s=1) as gen:
        with pytest.raises(LLMUnavailableError, match="cannot be reached"):
            list(gen.stream(QUESTION, max_tokens=8))
        with pytest.raises(LLMUnavailableError, match="cannot be reached"):
            gen.check()


def test_a_replica_that_is_down_is_passed_over_for_the_real_server(
    server: EmbeddedLlamaServer,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    model = ModelSettings(  # type: ignore[call-arg]
        name="smollm2-135m-instruct",
        base_url=dead,
        base_urls=[server.base_url],
        context_window=1024,
    )
    with OpenAICompatibleGenerator(model, LLMSettings(retries=0)) as gen:
        gen.check()  # one server answers: ready, and the dead one is noted
        assert gen.down() == [dead]
        for _ in range(2):  # the dead one's turn comes, and is passed over
            *texts, usage = gen.stream(QUESTION, max_tokens=8, temperature=0.0)
            assert "".join(str(t) for t in texts).strip()
            assert isinstance(usage, Usage)


def test_stop_ends_the_server_process(tmp_path: Path) -> None:
    name, gguf = resolve_gguf("smollm2-135m", tmp_path)
    srv = EmbeddedLlamaServer(
        gguf, name, context_window=512, threads=1, log_path=tmp_path / "l.log"
    )
    srv.start()
    pid = srv.pid
    assert pid is not None
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_resolve_gguf_refuses_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither"):
        resolve_gguf(str(tmp_path / "missing.gguf"), tmp_path)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_gguf(str(fake), tmp_path)


def test_the_bundled_qwen_is_assembled_once_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = assemble_qwen(tmp_path)
    assert path.stat().st_size == llama_server.QWEN_SIZE
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == llama_server.QWEN_SHA256
    assert path.read_bytes()[:4] == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert assemble_qwen(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    # parts that do not hash to the expected value are refused, and nothing is left behind
    monkeypatch.setattr(llama_server, "QWEN_SHA256", "0" * 64)
    other = tmp_path / "other"
    with pytest.raises(ModelError, match="do not match the expected SHA-256"):
        assemble_qwen(other)
    assert list(other.iterdir()) == []


def test_the_server_dies_with_enclave_even_on_sigkill(tmp_path: Path) -> None:
    script = f"""
import sys, time
from pathlib import Path
from backends.llama_server import EmbeddedLlamaServer, resolve_gguf
name, gguf = resolve_gguf("smollm2-135m", Path({str(tmp_path)!r}))
srv = EmbeddedLlamaServer(gguf, name, context_window=512, threads=1, log_path=Path({str(tmp_path / "l.log")!r}))
srv.start()
print(srv.pid, flush=True)
time.sleep(300)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.kill()  # SIGKILL: no atexit, no cleanup in the parent
    parent.wait(timeout=10)
    parent.stdout.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"llama.cpp server {child} outlived its parent")
