"""Faults against a real ``enclave serve`` process: the LLM server killed mid-answer (the
only one, or one of two replicas), the vector store unreachable or held by another
process. The API must tell the client
clearly (an SSE ``error`` event mid-stream, else a 503 with the JSON error body), stay up
for everything that does not need the failed part, and recover by itself once the
fault is gone.

The LLM is ``tests/extractive_llm.py`` as a real process (its words slowed down, so there
is time to kill it mid-answer); the store is the embedded Qdrant Edge with a small
knowledge base ingested by ``enclave ingest``; the key comes from ``enclave keys create``.
A Qdrant server that comes back cannot be tested here (there is none to start), so
recovery is tested with the embedded store held by another process and then freed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.sql.app import AppDatabase
from core.settings import Settings
from tests.data.make_files import sample_spec, write_md
from tests.processes import env_for, free_port, run, start, stop, wait_ok
from tests.sse import sse_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How many days of annual leave do employees accrue per calendar year?"
ANSWER = "Employees accrue 25 days of annual leave per calendar year"  # the fake's quote
WORD_DELAY_S = 0.4  # the answer has ~20 words: seconds to kill the LLM mid-way
HOLD_STORE = (  # another Enclave process on the same data dir, until a line on stdin
    "import sys\n"
    "from backends.container import build_container\n"
    "from core.settings import get_settings\n"
    "container = build_container(get_settings())\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
    "container.close()\n"
    "print('released', flush=True)\n"
)


@dataclass(frozen=True)
class KnowledgeBase:
    data: Path
    key: str
    admin_key: str

    def readiness(self, url: str) -> httpx.Response:
        """``/readyz`` as an admin sees it: with the reasons (others read `unavailable`)."""
        anonymous = httpx.get(url + "/readyz")
        detailed = httpx.get(url + "/readyz", headers={"Authorization": f"Bearer {self.admin_key}"})
        assert anonymous.status_code == detailed.status_code
        for check, why in anonymous.json()["checks"].items():
            assert why in ("ok", "unavailable"), why  # no internal address without a key
            assert (why == "ok") == (detailed.json()["checks"][check] == "ok")
        return detailed


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    """The leave policy (group ``staff``) in the embedded store, and a staff user's key."""
    root = tmp_path_factory.mktemp("faults")
    write_md(root / "kb" / "leave.md", sample_spec("leave"))
    data = root / "data"
    ingested = run(["ingest", str(root / "kb"), "--groups", "staff"], data)
    assert ingested.returncode == 0, ingested.stderr
    created = run(["keys", "create", "--role", "user", "--groups", "staff", "--json"], data)
    assert created.returncode == 0, created.stderr
    admin = run(["keys", "create", "--role", "admin", "--json"], data)
    assert admin.returncode == 0, admin.stderr
    return KnowledgeBase(data, json.loads(created.stdout)["key"], json.loads(admin.stdout)["key"])


class FakeLLM:
    """tests/extractive_llm.py as a process on one port: killed, and started again."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """The settings of an Enclave process that uses this LLM (and fails fast)."""
        return {
            "ENCLAVE_LLM__MODELS": json.dumps([{"name": "quick", "base_url": self.url}]),
            "ENCLAVE_LLM__RETRIES": "0",
            "ENCLAVE_LLM__CONNECT_TIMEOUT_S": "2",
        }

    def start(self) -> None:
        command = ["-m", "tests.extractive_llm", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *command, "--word-delay", str(WORD_DELAY_S)],
                stdout=out,
                stderr=out,
                cwd=ROOT,
            )
        wait_ok(self.process, f"{self.url}/models", self.log, limit_s=120)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture
def llm(tmp_path: Path) -> Iterator[FakeLLM]:
    fake = FakeLLM(tmp_path / "llm.log")
    fake.start()
    yield fake
    fake.stop()


@dataclass
class Api:
    url: str
    client: httpx.Client  # with the staff key
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serving(kb: KnowledgeBase, log: Path, **env: str) -> Iterator[Api]:
    """``enclave serve`` on the knowledge base's data dir, until the block ends; it must
    then stop cleanly, and never have logged a traceback."""
    port = free_port()
    process = start(["serve", "--port", str(port)], env_for(kb.data, **env), log)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {kb.key}"}, timeout=60, trust_env=False
    )
    try:
        wait_ok(process, url + "/healthz", log, limit_s=300)
        yield Api(url, client, process, log)
        assert process.poll() is None, log.read_text(errors="replace")
    finally:
        client.close()
        code = stop(process)
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text, text


def assert_error(response: httpx.Response, status: int, type_: str, *needles: str) -> str:
    """The response is the API's JSON error body with this status and type; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    message = str(body["error"]["message"])
    for needle in needles:
        assert needle in message
    return message


def audit_rows(kb: KnowledgeBase, question: str) -> list[dict[str, Any]]:
    db = AppDatabase(Settings(data_dir=kb.data).database_url)
    try:
        return [r for r in db.audit_since(0) if r["question"] == question]
    finally:
        db.close()


def search_works(api: Api) -> None:
    response = api.client.post("/v1/search", json={"query": "annual leave"})
    assert response.status_code == 200, response.text
    assert any("25 days" in h["text"] for h in response.json()["hits"])


def answer_works(api: Api, question: str) -> None:
    response = api.client.post("/v1/ask", json={"question": question})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].startswith(ANSWER)
    assert len(body["citations"]) == 1
    assert "25 days" in body["citations"][0]["quote"]


# -- the LLM -------------------------------------------------------------------------------
def test_the_llm_killed_mid_answer_is_an_error_event_and_the_api_recovers(
    kb: KnowledgeBase, llm: FakeLLM, tmp_path: Path
) -> None:
    with serving(kb, tmp_path / "serve.log", **llm.env()) as api:
        # /v1/ask: the answer streams, the LLM dies after the first word
        events: list[tuple[str, Any]] = []
        with api.client.stream("POST", "/v1/ask", json={"question": QUESTION, "stream": True}) as r:
            assert r.status_code == 200
            request_id = r.headers["x-request-id"]
            for name, data in sse_events(r):
                events.append((name, data))
                if name == "token" and llm.process is not None and llm.process.poll() is None:
                    llm.kill()
        names = [n for n, _ in events]
        assert names[0] == "retrieval"
        assert "token" in names
        assert names[-1] == "error"
        assert "done" not in names
        error = events[-1][1]["error"]
        assert error["type"] == "llm_unavailable"
        assert "failed mid-answer" in error["message"]
        assert error["request_id"] == request_id
        partial = "".join(d["text"] for n, d in events if n == "token")
        assert ANSWER.startswith(partial)  # the words that came, and not the whole answer
        # the audit log keeps the failure and the partial answer
        assert [(r["status"], r["answer"]) for r in audit_rows(kb, QUESTION)] == [
            ("error: llm_unavailable", partial)
        ]

        # the API stays up: liveness, search (no LLM), and readiness tells what is down
        assert httpx.get(api.url + "/healthz").json() == {"status": "ok"}
        search_works(api)
        ready = kb.readiness(api.url)
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"] == "ok"
        assert "cannot be reached" in ready.json()["checks"]["llm"]
        assert_error(
            api.client.post("/v1/ask", json={"question": QUESTION}),
            503,
            "llm_unavailable",
            llm.url,
        )

        # the LLM is back on the same port: answers work again, nothing to restart
        llm.start()
        assert httpx.get(api.url + "/readyz").status_code == 200
        answer_works(api, QUESTION)

        # the OpenAI-compatible stream, read by the official client: the error chunk
        # raises an APIError with the API's message
        client = openai.OpenAI(base_url=api.url + "/v1", api_key=kb.key, max_retries=0)
        stream = client.chat.completions.create(
            model="enclave", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        pieces: list[str] = []

        def read_to_the_end() -> None:
            for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    pieces.append(text)
                    if len(pieces) == 1:
                        llm.kill()

        with pytest.raises(openai.APIError) as info:
            read_to_the_end()
        client.close()
        assert "failed mid-answer" in info.value.message
        assert pieces
        assert ANSWER.startswith("".join(pieces))

        llm.start()
        answer_works(api, "How many days of annual leave do employees accrue per year?")


def test_with_two_llm_replicas_a_replica_killed_mid_answer_fails_that_answer_only(
    kb: KnowledgeBase, llm: FakeLLM, tmp_path: Path
) -> None:
    other = FakeLLM(tmp_path / "llm-2.log")
    other.start()
    replicas = {"name": "quick", "base_url": llm.url, "base_urls": [other.url]}
    env = {**llm.env(), "ENCLAVE_LLM__MODELS": json.dumps([replicas])}
    try:
        with serving(kb, tmp_path / "serve.log", **env) as api:
            assert httpx.get(api.url + "/readyz").status_code == 200
            # the first request goes to the first replica: kill it after the first word
            events: list[tuple[str, Any]] = []
            with api.client.stream(
                "POST", "/v1/ask", json={"question": QUESTION, "stream": True}
            ) as r:
                for name, data in sse_events(r):
                    events.append((name, data))
                    if name == "token" and llm.process is not None and llm.process.poll() is None:
                        llm.kill()
            names = [n for n, _ in events]
            assert names.count("retrieval") == 1
            assert names[-1] == "error"
            assert "failed mid-answer" in events[-1][1]["error"]["message"]
            # not restarted on the other replica: no word came twice
            assert ANSWER.startswith("".join(d["text"] for n, d in events if n == "token"))

            # the other replica answers everything now; the API is ready with one
            for _ in range(3):
                answer_works(api, QUESTION)
            ready = httpx.get(api.url + "/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        other.stop()


# -- the store -----------------------------------------------------------------------------
def test_an_unreachable_qdrant_server_is_a_clear_503_and_the_api_stays_up(
    kb: KnowledgeBase, llm: FakeLLM, tmp_path: Path
) -> None:
    qdrant = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with serving(kb, tmp_path / "serve.log", ENCLAVE_STORE__URL=qdrant, **llm.env()) as api:
        ready = kb.readiness(api.url)
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["llm"] == "ok"
        assert qdrant in checks["store"]

        search = api.client.post("/v1/search", json={"query": "annual leave"})
        message = assert_error(search, 503, "unavailable", qdrant)
        assert "cannot" in message
        assert_error(api.client.post("/v1/ask", json={"question": QUESTION}), 503, "unavailable")
        # a stream that cannot start is a 503 too, not an event stream
        streamed = api.client.post("/v1/ask", json={"question": QUESTION, "stream": True})
        assert_error(streamed, 503, "unavailable", qdrant)
        chat = api.client.post(
            "/v1/chat/completions",
            json={"model": "enclave", "messages": [{"role": "user", "content": QUESTION}]},
        )
        assert_error(chat, 503, "unavailable", qdrant)

        # what needs no store still works
        assert httpx.get(api.url + "/healthz").json() == {"status": "ok"}
        assert api.client.get("/v1/me").json()["groups"] == ["staff"]


def test_a_store_held_by_another_process_is_a_503_until_it_is_free(
    kb: KnowledgeBase, llm: FakeLLM, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env_for(kb.data),
        cwd=ROOT,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "holding"
        with serving(kb, tmp_path / "serve.log", **llm.env()) as api:
            held = "in use by another Enclave process"
            ready = kb.readiness(api.url)
            assert ready.status_code == 503
            assert held in ready.json()["checks"]["store"]
            assert_error(
                api.client.post("/v1/search", json={"query": "annual leave"}),
                503,
                "unavailable",
                held,
            )
            assert_error(
                api.client.post("/v1/ask", json={"question": QUESTION}), 503, "unavailable", held
            )
            assert httpx.get(api.url + "/healthz").json() == {"status": "ok"}

            holder.stdin.write("\n")  # the other process closes the store and exits
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
            assert holder.wait(timeout=60) == 0

            wait_ok(api.process, api.url + "/readyz", api.log, limit_s=60)
            search_works(api)
            answer_works(api, QUESTION)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdin.close()
        holder.stdout.close()
