"""The generator over several servers of one model (vLLM replicas): spreading, failover,
cool-down, the all-down error, no restart of a half-streamed answer, no secrets shown.

The servers are real HTTP servers on loopback: the deterministic OpenAI-compatible app
of ``tests/extractive_llm.py`` under uvicorn in a thread of this process (so it can be
stopped and started again on the same port, and its chat requests counted), and a raw
socket server for the failures a real server would not produce on demand (a connection
dropped mid-answer, an error status)."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from pydantic import SecretStr

from backends.generators import OpenAICompatibleGenerator
from core.errors import ConfigError, LLMUnavailableError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Chunk, Hit, Principal, Usage
from serving.answers import Answerer, Router, complete
from tests.extractive_llm import create_app
from tests.processes import free_port

QUESTION = [{"role": "user", "content": "How many days of annual leave?"}]
NO_CONTEXT = "The documents do not cover this question."  # the fake's reply to QUESTION
COOLDOWN_S = 30.0


class FakeLLM:
    """tests/extractive_llm.py's server in a thread, counting its chat requests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        app = create_app()

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
                self.requests += 1
            await app(scope, receive, send)

        config = uvicorn.Config(counting, host="127.0.0.1", port=self.port, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive(), f"the fake LLM on port {self.port} did not start"
            assert time.monotonic() < deadline, f"the fake LLM on port {self.port} did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = self._thread = None


class RawLLM:
    """A socket server that reads a request, sends ``reply`` (raw HTTP bytes) and closes
    the connection: a crash after part of an answer, or an error status."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                while length and len(rest) < int(length.group(1)):
                    rest += conn.recv(65536)
                self.requests += 1
                conn.sendall(self.reply)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()


def sse_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )


def sse_chunk(text: str) -> bytes:
    data = {"choices": [{"index": 0, "delta": {"content": text}}]}
    event = f"data: {json.dumps(data)}\n\n".encode()
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def error_reply(status: int, message: str) -> bytes:
    body = json.dumps({"error": {"message": message}}).encode()
    return (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class Clock:
    """A clock the test moves: cool-downs end when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def generator(
    *urls: str, clock: Clock | None = None, name: str = "quick", **llm: Any
) -> OpenAICompatibleGenerator:
    model = ModelSettings(name=name, base_url=urls[0], base_urls=list(urls[1:]))  # type: ignore[call-arg]
    settings = LLMSettings(**{"retries": 0, "connect_timeout_s": 2, **llm})
    return OpenAICompatibleGenerator(model, settings, cooldown_s=COOLDOWN_S, clock=clock or Clock())


def ask(gen: OpenAICompatibleGenerator) -> str:
    return complete(gen, QUESTION, max_tokens=32)


@pytest.fixture
def two() -> Iterator[tuple[FakeLLM, FakeLLM]]:
    a, b = FakeLLM(), FakeLLM()
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def test_sequential_requests_alternate_between_the_replicas(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    a, b = two
    with generator(a.url, b.url) as gen:
        assert gen.urls == [a.url, b.url]
        answers = [ask(gen) for _ in range(6)]
    assert answers == [NO_CONTEXT] * 6
    assert (a.requests, b.requests) == (3, 3)


def test_a_request_goes_to_the_replica_with_fewer_in_flight(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    a, b = two
    with generator(a.url, b.url) as gen:
        busy = gen.stream(QUESTION, max_tokens=32)
        assert isinstance(next(busy), str)  # a long answer in progress on a
        assert (a.requests, b.requests) == (1, 0)
        for _ in range(3):  # each while a still has one in flight: all to b
            assert ask(gen) == NO_CONTEXT
        assert (a.requests, b.requests) == (1, 3)
        rest = [p for p in busy if isinstance(p, str)]
        assert rest  # the busy answer was never disturbed
        assert ask(gen) == NO_CONTEXT  # both idle again: a's turn
        assert (a.requests, b.requests) == (2, 3)


def test_a_replica_that_is_down_is_skipped_then_used_again_after_its_cooldown(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    a, b = two
    clock = Clock()
    with generator(a.url, b.url, clock=clock) as gen:
        assert ask(gen) == NO_CONTEXT  # a
        a.stop()
        # b's turn, then a's: a refuses the connection and the request moves to b
        assert [ask(gen) for _ in range(4)] == [NO_CONTEXT] * 4
        assert (a.requests, b.requests) == (1, 4)
        assert gen.down() == [a.url]
        gen.check()  # one server answers: ready

        a.start()  # back on the same port, but still in its cool-down: passed over
        assert [ask(gen) for _ in range(3)] == [NO_CONTEXT] * 3
        assert (a.requests, b.requests) == (1, 7)

        clock.now += COOLDOWN_S + 1  # the cool-down is over: a takes its turns again
        assert [ask(gen) for _ in range(4)] == [NO_CONTEXT] * 4
        assert (a.requests, b.requests) == (3, 9)
        assert gen.down() == []


def test_a_check_that_reaches_a_replica_again_ends_its_cooldown(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    a, b = two
    with generator(a.url, b.url) as gen:
        a.stop()
        gen.check()  # b answers; a is put in cool-down
        assert gen.down() == [a.url]
        a.start()
        gen.check()  # /readyz polls this: a answers, so it is used again at once
        assert gen.down() == []
        assert [ask(gen) for _ in range(2)] == [NO_CONTEXT] * 2
        assert (a.requests, b.requests) == (1, 1)


def test_when_every_replica_is_down_the_error_names_them_all() -> None:
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with generator(*dead, retries=1) as gen:
        with pytest.raises(LLMUnavailableError) as streamed:
            ask(gen)
        with pytest.raises(LLMUnavailableError) as checked:
            gen.check()
    for info in (streamed, checked):
        message = str(info.value)
        assert message.startswith("none of the 2 LLM servers of model 'quick' can be reached")
        assert all(url in message for url in dead)
        assert "ENCLAVE_LLM__MODELS" in message


def test_one_replica_down_keeps_the_single_server_message() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with generator(url) as gen, pytest.raises(LLMUnavailableError) as info:
        ask(gen)
    assert str(info.value) == (
        f"the LLM server at {url} (model 'quick') cannot be reached (ConnectError); "
        "check that it is running and ENCLAVE_LLM__MODELS"
    )


def test_a_half_streamed_answer_is_never_restarted_on_another_replica(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    crashing = RawLLM(sse_head() + sse_chunk("Employees") + sse_chunk(" get"))
    _, b = two
    try:
        with generator(crashing.url, b.url) as gen:
            stream = gen.stream(QUESTION, max_tokens=32)
            assert next(stream) == "Employees"
            assert next(stream) == " get"
            with pytest.raises(LLMUnavailableError, match="failed mid-answer"):
                next(stream)
            assert b.requests == 0
            assert gen.down() == [crashing.url]
            assert ask(gen) == NO_CONTEXT  # the next request goes to the healthy one
    finally:
        crashing.stop()
    assert (crashing.requests, b.requests) == (1, 1)


@pytest.mark.parametrize(
    "reply",
    [sse_head(), error_reply(503, "overloaded"), error_reply(500, "engine died")],
    ids=["dropped-before-the-first-token", "http-503", "http-500"],
)
def test_a_failure_before_the_first_token_moves_to_the_next_replica(
    two: tuple[FakeLLM, FakeLLM], reply: bytes
) -> None:
    failing = RawLLM(reply)
    _, b = two
    try:
        with generator(failing.url, b.url) as gen:
            pieces = list(gen.stream(QUESTION, max_tokens=32))
    finally:
        failing.stop()
    assert "".join(p for p in pieces if isinstance(p, str)) == NO_CONTEXT
    assert isinstance(pieces[-1], Usage)
    assert (failing.requests, b.requests) == (1, 1)


def test_a_refused_request_is_not_tried_elsewhere(two: tuple[FakeLLM, FakeLLM]) -> None:
    refusing = RawLLM(error_reply(400, "This model's maximum context length is 2048 tokens"))
    _, b = two
    try:
        with generator(refusing.url, b.url) as gen:
            with pytest.raises(ModelError, match=r"HTTP 400.*maximum context length"):
                ask(gen)
            assert gen.down() == []  # the request's fault, not the server's
    finally:
        refusing.stop()
    assert b.requests == 0


def test_check_names_a_replica_that_serves_another_model(two: tuple[FakeLLM, FakeLLM]) -> None:
    a, b = two
    with generator(a.url, b.url, name="qwen-7b") as gen, pytest.raises(ConfigError) as info:
        gen.check()
    assert f"the LLM server at {a.url} serves ['quick', 'thorough'], not 'qwen-7b'" in str(
        info.value
    )


def test_duplicate_urls_are_one_replica(two: tuple[FakeLLM, FakeLLM]) -> None:
    a, _ = two
    with generator(a.url, a.url + "/") as gen:
        assert gen.urls == [a.url]


def test_secrets_are_never_shown_in_errors_or_logs(
    two: tuple[FakeLLM, FakeLLM], caplog: pytest.LogCaptureFixture
) -> None:
    _, b = two
    port = free_port()
    dead = f"http://admin:hunter2@127.0.0.1:{port}/v1"
    model = ModelSettings(  # type: ignore[call-arg]
        name="quick", base_url=dead, base_urls=[b.url], api_key=SecretStr("sk-very-secret")
    )
    with (
        caplog.at_level(logging.DEBUG),
        OpenAICompatibleGenerator(model, LLMSettings(retries=0)) as gen,
    ):
        assert gen.urls == [f"http://127.0.0.1:{port}/v1", b.url]
        assert ask(gen) == NO_CONTEXT
        assert ask(gen) == NO_CONTEXT  # the dead one was tried (and failed over) once
        b.stop()
        with pytest.raises(LLMUnavailableError) as info:
            ask(gen)
    shown = str(info.value) + caplog.text
    assert f"http://127.0.0.1:{port}/v1" in shown
    assert "passing it over" in caplog.text
    assert "hunter2" not in shown
    assert "sk-very-secret" not in shown


def test_a_follow_up_is_answered_by_the_large_model_while_the_small_one_is_down(
    two: tuple[FakeLLM, FakeLLM],
) -> None:
    large_server, _ = two
    small = generator(f"http://127.0.0.1:{free_port()}/v1", name="quick")
    large = OpenAICompatibleGenerator(
        ModelSettings(name="thorough", base_url=large_server.url, role="large"),  # type: ignore[call-arg]
        LLMSettings(retries=0),
    )
    settings = LLMSettings(retries=0)
    retriever = _OneHit()
    answerer = Answerer(retriever, Router({"quick": small, "thorough": large}, settings), settings)  # type: ignore[arg-type]
    with small, large:
        done = answerer.answer(
            "And how many carry over?",
            Principal("u", groups=("staff",)),
            history=[("How many days of annual leave?", "25 days [1].")],
        )
    # the rewrite fell back to previous question + follow-up; the large model answered
    assert retriever.queries == ["How many days of annual leave? And how many carry over?"]
    assert done.answer.model == "thorough"
    assert done.answer.text == "Up to 5 unused days may be carried over into the next year. [1]"
    assert large_server.requests == 1


class _OneHit:
    """A retriever that finds the carry-over rule, whatever the query."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, query: str, principal: Principal, **kwargs: Any) -> list[Hit]:
        self.queries.append(query)
        chunk = Chunk(
            id="c1",
            doc_id="d1",
            source="/kb/leave.md",
            title="Leave",
            text="Up to 5 unused days may be carried over into the next year.",
            chunk_index=0,
            pages=(),
            heading_path=(),
            content_hash="h",
            modified_at=0.0,
            mime_type="text/markdown",
            groups=("staff",),
        )
        return [Hit(chunk=chunk, score=1.0, relevance=0.9)]


# -- the asynchronous stream (the API's) behaves the same ------------------------------------
async def _collect(gen: OpenAICompatibleGenerator) -> list[str | Usage]:
    stream = gen.astream(QUESTION, max_tokens=32)
    try:
        return [piece async for piece in stream]
    finally:
        await gen.aclose()


@pytest.mark.parametrize(
    "reply",
    [sse_head(), error_reply(503, "overloaded")],
    ids=["dropped-before-the-first-token", "http-503"],
)
def test_async_a_failure_before_the_first_token_moves_to_the_next_replica(
    two: tuple[FakeLLM, FakeLLM], reply: bytes
) -> None:
    failing = RawLLM(reply)
    _, b = two
    try:
        with generator(failing.url, b.url) as gen:
            pieces = anyio.run(_collect, gen)
    finally:
        failing.stop()
    assert "".join(p for p in pieces if isinstance(p, str)) == NO_CONTEXT
    assert isinstance(pieces[-1], Usage)
    assert (failing.requests, b.requests) == (1, 1)


def test_async_a_half_streamed_answer_is_never_restarted(two: tuple[FakeLLM, FakeLLM]) -> None:
    crashing = RawLLM(sse_head() + sse_chunk("Employees") + sse_chunk(" get"))
    _, b = two

    async def read(gen: OpenAICompatibleGenerator) -> list[str | Usage]:
        seen: list[str | Usage] = []

        async def drain() -> None:
            async for piece in gen.astream(QUESTION, max_tokens=32):
                seen.append(piece)

        with pytest.raises(LLMUnavailableError, match="failed mid-answer"):
            await drain()
        await gen.aclose()
        return seen

    try:
        with generator(crashing.url, b.url) as gen:
            assert anyio.run(read, gen) == ["Employees", " get"]
            assert b.requests == 0
    finally:
        crashing.stop()


def test_async_every_replica_down_is_one_error_naming_them() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    with generator(*urls, retries=1) as gen, pytest.raises(LLMUnavailableError) as info:
        anyio.run(_collect, gen)
    assert all(url in str(info.value) for url in urls)
