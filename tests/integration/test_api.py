"""The query API end to end: a real uvicorn server on loopback, real embedded Qdrant, the
bundled embedder, and a real llama.cpp server (SmolLM2, started and supervised by Enclave).

Knowledge base: ``leave.md`` (group ``staff``) and ``salaries.md`` (group ``hr``, with a
secret marker no model could invent). Keys: admin, a staff user, an hr user. The server
may ingest from ``<tmp>/server`` (``ENCLAVE_API__INGEST_ROOTS``).
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.container import Container, build_container
from backends.sql.app import AppDatabase, AuditEntry
from core.protocols import Embedder
from core.settings import ApiSettings, LLMSettings, ModelSettings, Settings
from ingest.pipeline import Ingestor
from serving.answers import NOT_COVERED
from serving.api import create_app
from serving.evaluation import write_eval_record
from tests import extractive_llm
from tests.data.make_files import sample_spec, write_md
from tests.processes import Server, free_port
from tests.sse import sse_list

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "ZORBLAX-7731"  # only in the document: never in a question
SALARIES = f"""# Salary bands

The salary band for senior engineers is 90,000 to 120,000 euros per year.
Band reviews happen every April. Approval code {SECRET}.
"""


@dataclass
class Api:
    url: str
    settings: Settings
    container: Container
    admin: str
    staff: str
    hr: str
    hr_doc: str
    leave_doc: str
    clients: dict[str | None, httpx.Client] = field(default_factory=dict)

    def client(self, key: str | None) -> httpx.Client:
        """One client per key (closed when the server stops)."""
        if key not in self.clients:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self.clients[key] = client_for(self.url, headers)
        return self.clients[key]

    def db(self) -> AppDatabase:
        return AppDatabase(self.settings.database_url)


def client_for(url: str, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=url, headers=headers, timeout=120, trust_env=False)


def llm_settings(**overrides: Any) -> LLMSettings:
    return LLMSettings(
        embedded_model="smollm2-135m",
        embedded_context_window=2048,
        max_answer_tokens=48,
        temperature=0.0,
        **overrides,
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    kb = root / "kb"
    write_md(kb / "staff" / "leave.md", sample_spec("leave"))
    (kb / "hr").mkdir(parents=True)
    (kb / "hr" / "salaries.md").write_text(SALARIES, encoding="utf-8")
    (root / "server").mkdir()
    settings = Settings(
        data_dir=root / "data",
        llm=llm_settings(),
        api=ApiSettings(ingest_roots=[root / "server"]),
    )
    container = build_container(settings, embedder=embedder)
    ingestor = Ingestor(container)
    ingestor.run([kb / "staff"], groups=["staff"])
    ingestor.run([kb / "hr"], groups=["hr"])
    docs = {Path(r.document.source).name: r.document.doc_id for r in container.registry.all()}
    db = AppDatabase(settings.database_url)
    keys = {
        name: db.create_key(role, groups)[1]  # type: ignore[arg-type]
        for name, role, groups in (
            ("admin", "admin", ()),
            ("staff", "user", ("staff",)),
            ("hr", "user", ("hr", "staff")),
        )
    }
    db.close()
    try:
        with Server(create_app(settings, container)) as url:
            api = Api(
                url,
                settings,
                container,
                keys["admin"],
                keys["staff"],
                keys["hr"],
                docs["salaries.md"],
                docs["leave.md"],
            )
            yield api
            for client in api.clients.values():
                client.close()
    finally:
        container.close()


def assert_error(response: httpx.Response, status: int, type_: str, needle: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert needle in body["error"]["message"]
    assert "Traceback" not in response.text


# -- auth ------------------------------------------------------------------------------------
def test_health_needs_no_key_and_everything_else_does(api: Api) -> None:
    anon = api.client(None)
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "llm": "ok"}
    schema = anon.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/search", "/v1/chat/completions", "/v1/models"} <= set(schema["paths"])
    for method, path in [
        ("POST", "/v1/ask"),
        ("POST", "/v1/search"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/documents"),
        ("GET", f"/v1/sources/{api.leave_doc}"),
        ("GET", "/metrics"),
        ("POST", "/v1/feedback"),
        ("GET", "/v1/me"),
        ("GET", "/v1/conversations"),
        ("GET", "/v1/conversations/c1"),
        ("DELETE", "/v1/conversations/c1"),
        ("GET", "/v1/usage"),
        ("POST", "/v1/ingest"),
        ("GET", "/v1/quality"),
    ]:
        response = anon.request(method, path, json={})
        assert_error(response, 401, "unauthorized", "API key")
        assert response.headers["www-authenticate"] == "Bearer"
    with client_for(api.url, {"Authorization": "Bearer enc_nope_nope"}) as wrong:
        assert_error(wrong.get("/v1/models"), 401, "unauthorized", "invalid")


def test_user_key_on_admin_endpoints_is_403(api: Api) -> None:
    staff = api.client(api.staff)
    for method, path in [
        ("GET", "/v1/documents"),
        ("GET", f"/v1/documents/{api.leave_doc}"),
        ("DELETE", f"/v1/documents/{api.leave_doc}"),
        ("GET", "/v1/jobs"),
        ("GET", "/metrics"),
        ("GET", "/v1/usage"),
        ("POST", "/v1/ingest"),
        ("GET", "/v1/quality"),
    ]:
        assert_error(staff.request(method, path), 403, "forbidden", "admin")
    assert api.client(api.admin).get(f"/v1/documents/{api.leave_doc}").status_code == 200


def test_me_describes_the_calling_key(api: Api) -> None:
    db = api.db()
    try:
        hr = db.authenticate(api.hr)
    finally:
        db.close()
    assert hr is not None
    assert api.client(api.hr).get("/v1/me").json() == {
        "key_id": hr.id,
        "name": "",
        "role": "user",
        "groups": ["hr", "staff"],
    }
    assert api.client(api.admin).get("/v1/me").json()["role"] == "admin"


# -- answers ---------------------------------------------------------------------------------
def test_ask_returns_a_grounded_answer_with_valid_citations(api: Api) -> None:
    response = api.client(api.staff).post(
        "/v1/ask", json={"question": "How many days of annual leave do employees get?"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"answer", "citations", "passages", "model", "conversation_id", "usage"}
    assert body["model"] == "smollm2-135m-instruct"
    assert body["answer"].strip()
    assert not body["abstained"]
    assert body["passages"]
    assert body["passages"][0]["doc_id"] == api.leave_doc
    assert body["usage"]["completion_tokens"] > 0
    assert body["usage"]["prompt_tokens"] > 0
    passages = {p["n"]: p for p in body["passages"]}
    for c in body["citations"]:
        assert c["n"] in passages  # every marker points to a passage it was given
        assert c["doc_id"] == passages[c["n"]]["doc_id"]
        assert c["quote"]
        assert c["quote"] in passages[c["n"]]["text"]


def test_every_citation_names_a_given_passage_and_quotes_it(
    tmp_path: Path, embedder: Embedder
) -> None:
    """With a model that always cites (the extractive test server, in this process), the
    answer carries citations, and each names a passage it was given and quotes it
    verbatim: the check above, on a model whose citations are not optional."""
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    with Server(extractive_llm.create_app()) as llm_url:
        models = [ModelSettings(name="quick", base_url=llm_url + "/v1", role="small")]
        settings = Settings(data_dir=tmp_path / "data", llm=LLMSettings(models=models, retries=0))
        container = build_container(settings, embedder=embedder)
        try:
            Ingestor(container).run([tmp_path / "kb"], groups=["staff"])
            db = AppDatabase(settings.database_url)
            key = db.create_key("user", ("staff",))[1]
            db.close()
            with (
                Server(create_app(settings, container)) as url,
                client_for(url, {"Authorization": f"Bearer {key}"}) as client,
            ):
                response = client.post(
                    "/v1/ask", json={"question": "How many days of annual leave do employees get?"}
                )
        finally:
            container.close()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["citations"], body["answer"]
    passages = {p["n"]: p for p in body["passages"]}
    for c in body["citations"]:
        assert c["n"] in passages
        assert c["doc_id"] == passages[c["n"]]["doc_id"]
        assert c["quote"]
        assert c["quote"] in passages[c["n"]]["text"]
    assert "leave" in body["citations"][0]["quote"].lower()
    # the extractive model quotes a passage: the system finds each sentence in it
    assert body["claims"]
    for claim in body["claims"]:
        assert claim["supported"], claim
        text = passages[claim["n"]]["text"]
        assert text[claim["quote_start"] : claim["quote_end"]] == claim["quote"]
        assert body["answer"][claim["start"] : claim["end"]].startswith(claim["text"][:20])


def test_off_topic_question_abstains_without_the_model(api: Api) -> None:
    body = (
        api.client(api.staff)
        .post("/v1/ask", json={"question": "What is the boiling point of tungsten in kelvin?"})
        .json()
    )
    assert body["abstained"] is True
    assert body["answer"] == NOT_COVERED
    assert (body["citations"], body["passages"]) == ([], [])
    assert body["usage"]["total_tokens"] == 0


def test_ask_streams_retrieval_tokens_citations_done(api: Api) -> None:
    response = api.client(api.staff).post(
        "/v1/ask", json={"question": "How many leave days carry over?", "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_list(response)
    names = [name for name, _ in events]
    assert names[0] == "retrieval"
    assert names[-2:] == ["citations", "done"]
    assert "token" in names
    assert set(names[1:-2]) == {"token"}
    tokens = "".join(d["text"] for n, d in events if n == "token")
    done = events[-1][1]
    assert done["answer"].strip()
    unmarked = lambda s: re.sub(r"\[[\d, ]+\]|\s", "", s)  # noqa: E731
    assert unmarked(done["answer"]) == unmarked(tokens)  # the answer is what was streamed
    assert events[0][1]["passages"][0]["doc_id"] == api.leave_doc
    assert done["answer_id"]
    assert done["conversation_id"] == events[0][1]["conversation_id"]


def test_follow_up_keeps_the_conversation_and_rewrites_the_query(api: Api) -> None:
    staff = api.client(api.staff)
    first = staff.post("/v1/ask", json={"question": "How many days of annual leave do I get?"})
    cid = first.json()["conversation_id"]
    follow = staff.post(
        "/v1/ask",
        json={"question": "And how many carry over?", "conversation_id": cid, "stream": True},
    )
    events = sse_list(follow)
    retrieval = events[0][1]
    assert retrieval["conversation_id"] == cid
    assert retrieval["query"] != "And how many carry over?"  # rewritten before retrieval
    db = api.db()
    try:
        turns = db.conversation(cid, db.authenticate(api.staff).id)  # type: ignore[union-attr]
    finally:
        db.close()
    assert [q for q, _ in turns][-2:] == [
        "How many days of annual leave do I get?",
        "And how many carry over?",
    ]
    # the stored turns carry each answer's id and citations, as /v1/ask returned them
    stored = staff.get(f"/v1/conversations/{cid}").json()
    assert stored["conversation_id"] == cid
    assert [t["question"] for t in stored["turns"]] == [q for q, _ in turns]
    assert stored["turns"][0]["answer_id"] == first.json()["answer_id"]
    assert stored["turns"][0]["citations"] == first.json()["citations"]
    assert stored["turns"][1]["answer_id"] == events[-1][1]["answer_id"]
    assert stored["turns"][1]["citations"] == events[-1][1]["citations"]
    # someone else's conversation id is not theirs to continue
    other = api.client(api.hr).post("/v1/ask", json={"question": "leave?", "conversation_id": cid})
    assert_error(other, 404, "not_found")


# -- access control -------------------------------------------------------------------------
SALARY_PROBES = [  # aimed at the hr document, including its exact text (but not the code)
    "What is the salary band for senior engineers?",
    "What is the approval code for band reviews?",
    SALARIES.replace(SECRET, ""),
]


def test_a_user_never_receives_anything_from_outside_their_groups(api: Api) -> None:
    staff = api.client(api.staff)
    seen = []
    for q in SALARY_PROBES:
        q = q[:3900]
        seen.append(staff.post("/v1/search", json={"query": q, "top_k": 50}).text)
        seen.append(staff.post("/v1/ask", json={"question": q}).text)
        seen.append(staff.post("/v1/ask", json={"question": q, "stream": True}).text)
        seen.append(
            staff.post(
                "/v1/chat/completions",
                json={
                    "model": "enclave",
                    "messages": [{"role": "user", "content": q}],
                    "stream": True,
                },
            ).text
        )
        seen.append(
            staff.post(
                "/v1/chat/completions",
                json={"model": "enclave", "messages": [{"role": "user", "content": q}]},
            ).text
        )
    for text in seen:
        assert SECRET not in text
        assert api.hr_doc not in text
        assert "salaries.md" not in text
    assert_error(staff.get(f"/v1/sources/{api.hr_doc}"), 404, "not_found")
    assert_error(staff.get(f"/v1/sources/{api.hr_doc}/file"), 404, "not_found")
    # the same probes reach the document for a member of hr
    hr = api.client(api.hr)
    hits = hr.post("/v1/search", json={"query": SALARY_PROBES[0]}).json()["hits"]
    assert hits[0]["doc_id"] == api.hr_doc
    assert SECRET in hr.get(f"/v1/sources/{api.hr_doc}").text
    assert SECRET.encode() in hr.get(f"/v1/sources/{api.hr_doc}/file").content


def test_search_returns_the_cli_hit_fields(api: Api) -> None:
    hits = (
        api.client(api.staff)
        .post("/v1/search", json={"query": "annual leave", "top_k": 2, "mode": "sparse"})
        .json()["hits"]
    )
    assert 1 <= len(hits) <= 2
    assert set(hits[0]) >= {
        "doc_id", "chunk_id", "source", "title", "page", "heading_path", "chunk_index",
        "score", "relevance", "text",
    }  # fmt: skip


# -- OpenAI compatibility -------------------------------------------------------------------
def test_the_official_openai_client_works_unchanged(api: Api) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=api.url + "/v1", api_key=api.staff, max_retries=0)
    models = [m.id for m in client.models.list().data]
    assert models == ["enclave", "smollm2-135m-instruct"]
    reply = client.chat.completions.create(
        model="enclave",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How many days of annual leave do employees get?"},
        ],
    )
    assert reply.choices[0].message.content
    assert reply.model == "smollm2-135m-instruct"
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    assert isinstance((reply.model_extra or {})["citations"], list)
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "How many leave days carry over?"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "citations" in (chunks[-1].model_extra or {})
    client.close()


# -- feedback, audit, metrics ----------------------------------------------------------------
def test_feedback_and_audit_log(api: Api) -> None:
    staff = api.client(api.staff)
    question = "How many leave days do I get? Mail me at jo@example.com"
    body = staff.post("/v1/ask", json={"question": question}).json()
    ok = staff.post(
        "/v1/feedback",
        json={"answer_id": body["answer_id"], "rating": "down", "comment": "too short"},
    )
    assert ok.status_code == 200, ok.text
    # another key cannot rate it, an unknown answer is 404, a bad rating is 422
    assert_error(
        api.client(api.hr).post(
            "/v1/feedback", json={"answer_id": body["answer_id"], "rating": "up"}
        ),
        404,
        "not_found",
    )
    assert_error(
        staff.post("/v1/feedback", json={"answer_id": "nope", "rating": "up"}), 404, "not_found"
    )
    assert_error(
        staff.post("/v1/feedback", json={"answer_id": "x", "rating": "meh"}), 422, "invalid_request"
    )
    db = api.db()
    try:
        rows = {r["id"]: r for r in db.audit_since(0)}
    finally:
        db.close()
    row = rows[body["answer_id"]]
    assert row["question"] == question
    assert row["kind"] == "ask"
    assert row["answer"] == body["answer"]
    assert row["model"] == body["model"]
    assert row["chunk_ids"] == [p["chunk_id"] for p in body["passages"]]
    assert row["completion_tokens"] == body["usage"]["completion_tokens"]
    assert row["latency_ms"] > 0
    assert row["feedback"]["rating"] == "down"
    assert row["feedback"]["comment"] == "too short"
    details = row["details"]
    assert details["abstained"] is False
    assert details["cited_doc_ids"] == list(dict.fromkeys(c["doc_id"] for c in body["citations"]))
    assert {"embed", "search", "first_token", "generate"} <= set(details["timings"])
    assert 0 < details["timings"]["generate"] <= row["latency_ms"]
    assert any(r["kind"] == "search" for r in rows.values())
    db_bytes = Path(str(api.settings.database_url).removeprefix("sqlite:///")).read_bytes()
    assert api.staff.encode() not in db_bytes  # keys are stored hashed, never logged


def test_metrics_cover_stages_tokens_and_requests(api: Api) -> None:
    api.client(api.staff).post("/v1/ask", json={"question": "How many days of annual leave?"})
    text = api.client(api.admin).get("/metrics").text
    for stage in ("embed", "search", "generate", "first_token"):
        assert f'enclave_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'enclave_llm_tokens_total{kind="completion",model="smollm2-135m-instruct"}' in text
    assert 'enclave_requests_total{method="POST",route="/v1/ask",status="200"}' in text


# -- bad input ---------------------------------------------------------------------------------
def test_bad_requests_get_clear_4xx(api: Api) -> None:
    staff = api.client(api.staff)
    raw = staff.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(raw, 422, "invalid_request", "JSON")
    assert_error(staff.post("/v1/ask", json={}), 422, "invalid_request", "question")
    assert_error(staff.post("/v1/ask", json={"question": ""}), 422, "invalid_request", "question")
    assert_error(staff.post("/v1/ask", json={"question": "   "}), 400, "invalid_request", "empty")
    assert_error(
        staff.post("/v1/ask", json={"question": "x" * 5000}), 400, "invalid_request", "4000"
    )
    assert_error(
        staff.post("/v1/ask", json={"question": "leave?", "model": "gpt-4"}),
        400,
        "invalid_request",
        "unknown model 'gpt-4'",
    )
    assert_error(
        staff.post("/v1/ask", json={"question": "leave?", "model": "gpt-4", "stream": True}),
        400,
        "invalid_request",
        "unknown model",
    )
    assert_error(
        staff.post("/v1/search", json={"query": "leave", "filters": {"colour": "red"}}),
        400,
        "invalid_request",
        "colour",
    )
    assert_error(
        staff.post(
            "/v1/chat/completions",
            json={"model": "enclave", "messages": [{"role": "assistant", "content": "hi"}]},
        ),
        400,
        "invalid_request",
        "last message",
    )
    assert_error(staff.get("/v1/nothing-here"), 404, "not_found")
    rid = staff.post("/v1/ask", json={}, headers={"X-Request-ID": "trace-123"})
    assert rid.headers["x-request-id"] == "trace-123"
    assert rid.json()["error"]["request_id"] == "trace-123"


# -- documents ---------------------------------------------------------------------------------
def wait_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError("job did not finish")


def test_admin_uploads_lists_and_deletes_documents(api: Api) -> None:
    admin = api.client(api.admin)
    files = [
        (
            "files",
            (
                "parking.md",
                b"# Parking\n\nStaff park in garage B, level 2, with the blue badge.\n",
                "text/markdown",
            ),
        ),
        ("files", ("broken.pdf", b"%PDF-1.7 this is not really a pdf", "application/pdf")),
    ]
    started = admin.post(
        "/v1/documents", files=files, data={"groups": "staff", "tags": "facilities"}
    )
    assert started.status_code == 202, started.text
    job = wait_job(admin, started.json()["job_id"])
    assert job["status"] == "done"
    assert job["total_files"] == 2
    results = {r["source"]: r for r in job["results"]}
    assert results["parking.md"]["status"] == "added"
    assert results["broken.pdf"]["status"] == "failed"
    assert results["broken.pdf"]["reason"]
    docs = admin.get("/v1/documents").json()["documents"]
    parking = next(d for d in docs if d["source"].endswith("parking.md"))
    assert parking["groups"] == ["staff"]
    assert parking["tags"] == ["facilities"]
    assert parking["chunks"] >= 1
    staff = api.client(api.staff)
    hits = staff.post("/v1/search", json={"query": "where do staff park"}).json()["hits"]
    assert hits[0]["doc_id"] == parking["doc_id"]
    assert admin.delete(f"/v1/documents/{parking['doc_id']}").status_code == 200
    assert_error(admin.get(f"/v1/documents/{parking['doc_id']}"), 404, "not_found")
    hits = staff.post("/v1/search", json={"query": "where do staff park"}).json()["hits"]
    assert parking["doc_id"] not in {h["doc_id"] for h in hits}
    assert_error(admin.get("/v1/jobs/nope"), 404, "not_found")


# -- disconnects, supervision, failures ----------------------------------------------------------------
def test_a_client_that_disconnects_cancels_the_answer(api: Api) -> None:
    question = "Describe the annual leave policy in detail."
    with api.client(api.staff).stream(
        "POST", "/v1/ask", json={"question": question, "stream": True}
    ) as r:
        for line in r.iter_lines():
            if line.startswith("event: token"):
                break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db = api.db()
        try:
            rows = [r for r in db.audit_since(0) if r["question"] == question]
        finally:
            db.close()
        if rows:
            break
        time.sleep(0.5)
    assert [r["status"] for r in rows] == ["cancelled"]


def test_the_embedded_llm_is_restarted_when_it_dies(api: Api) -> None:
    server = api.container.embedded_llm
    assert server is not None
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (server.pid in (None, pid) or server.restarts < 1):
        time.sleep(0.5)
    assert server.restarts >= 1
    assert server.pid not in (None, pid)
    while time.monotonic() < deadline and api.client(api.staff).get("/readyz").status_code != 200:
        time.sleep(0.5)  # the new process loads its model before it listens
    response = api.client(api.staff).post("/v1/ask", json={"question": "How many leave days?"})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def no_llm_api(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[str, str, str]]:
    """A small knowledge base with an LLM URL nothing listens on, a tight rate limit and
    PII redaction of the audit log."""
    root = tmp_path_factory.mktemp("no-llm")
    write_md(root / "kb" / "leave.md", sample_spec("leave"))
    dead = ModelSettings(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1")
    settings = Settings(
        data_dir=root / "data",
        llm=LLMSettings(models=[dead], retries=1, connect_timeout_s=1),
        api=ApiSettings(rate_limit_per_minute=5, redact_audit=True),
    )
    container = build_container(settings, embedder=embedder)
    Ingestor(container).run([root / "kb"], groups=["staff"])
    db = AppDatabase(settings.database_url)
    _, key = db.create_key("user", ["staff"])
    db.close()
    try:
        with Server(create_app(settings, container)) as url:
            yield url, key, settings.database_url
    finally:
        container.close()


def test_llm_down_is_a_clear_503_or_stream_error(no_llm_api: tuple[str, str, str]) -> None:
    url, key, _ = no_llm_api
    client = client_for(url, {"Authorization": f"Bearer {key}"})
    response = client.post("/v1/ask", json={"question": "How many days of annual leave?"})
    assert_error(response, 503, "llm_unavailable", "cannot be reached")
    streamed = client.post(
        "/v1/ask", json={"question": "How many days of annual leave?", "stream": True}
    )
    events = sse_list(streamed)
    assert [n for n, _ in events] == ["retrieval", "error"]
    assert events[-1][1]["error"]["type"] == "llm_unavailable"
    ready = httpx.get(url + "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "ok"
    # search needs no LLM: works until the rate limit (5/min) is spent, then 429
    statuses = [client.post("/v1/search", json={"query": "leave"}).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200]
    assert statuses[-1] == 429
    limited = client.post("/v1/search", json={"query": "leave"})
    assert_error(limited, 429, "rate_limited", "retry in")
    assert int(limited.headers["retry-after"]) >= 1
    client.close()


def test_audit_redaction_when_configured(no_llm_api: tuple[str, str, str]) -> None:
    url, key, database_url = no_llm_api
    time.sleep(1)  # let the rate limiter of the previous test refill one request
    query = "leave rules, reply to jo.bloggs@example.com or +44 20 7946 0958"
    with client_for(url, {"Authorization": f"Bearer {key}"}) as client:
        response = client.post("/v1/search", json={"query": query})
    assert response.status_code in (200, 429)
    if response.status_code == 429:
        time.sleep(int(response.headers["retry-after"]))
        with client_for(url, {"Authorization": f"Bearer {key}"}) as client:
            assert client.post("/v1/search", json={"query": query}).status_code == 200
    db = AppDatabase(database_url)
    try:
        stored = [r["question"] for r in db.audit_since(0) if r["kind"] == "search"]
    finally:
        db.close()
    assert "leave rules, reply to [EMAIL] or [PHONE]" in stored
    assert not any("jo.bloggs" in q or "7946" in q for q in stored)


# -- conversations, usage, ingestion, quality ------------------------------------------------------
def test_conversations_are_listed_read_and_deleted_by_their_owner(api: Api) -> None:
    staff, hr = api.client(api.staff), api.client(api.hr)
    question = "What is the boiling point of tungsten? " + "Please be precise. " * 5
    asked = staff.post("/v1/ask", json={"question": question}).json()  # abstains: fast
    cid = asked["conversation_id"]
    listed = staff.get("/v1/conversations").json()["conversations"]
    assert listed[0]["conversation_id"] == cid  # the newest first
    assert listed[0]["turns"] == 1
    assert listed[0]["title"] == question[:79].rstrip() + "…"
    assert datetime.fromisoformat(listed[0]["updated_at"]).tzinfo is not None
    assert cid not in {
        c["conversation_id"] for c in hr.get("/v1/conversations").json()["conversations"]
    }
    (turn,) = staff.get(f"/v1/conversations/{cid}").json()["turns"]
    assert (turn["question"], turn["answer"]) == (question, NOT_COVERED)
    assert (turn["answer_id"], turn["citations"]) == (asked["answer_id"], [])
    for method in ("GET", "DELETE"):
        other = hr.request(method, f"/v1/conversations/{cid}")
        unknown = hr.request(method, "/v1/conversations/no-such-conversation")
        assert_error(other, 404, "not_found", cid)
        assert_error(unknown, 404, "not_found")
        assert other.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "no-such-conversation", cid
        )
    assert_error(staff.get("/v1/conversations/" + "x" * 65), 400, "invalid_request", "1-64")
    deleted = staff.delete(f"/v1/conversations/{cid}")
    assert deleted.json() == {"status": "deleted", "conversation_id": cid}
    assert_error(staff.get(f"/v1/conversations/{cid}"), 404, "not_found")
    assert cid not in {
        c["conversation_id"] for c in staff.get("/v1/conversations").json()["conversations"]
    }


def test_usage_aggregates_the_audit_log(api: Api) -> None:
    admin = api.client(api.admin)
    marker = uuid.uuid4().hex
    db = api.db()
    try:
        for _ in range(3):
            db.record(
                AuditEntry(
                    kind="ask",
                    key_id="k-usage",
                    question=f"cited {marker}",
                    chunk_ids=("c1",),
                    model="m",
                    answer="a [1]",
                    latency_ms=100.0,
                    timings_ms={"embed": 5.0, "generate": 90.0},
                    cited_doc_ids=(api.leave_doc, f"gone-{marker}"),
                    abstained=False,
                )
            )
        db.record(
            AuditEntry(
                kind="chat",
                key_id="k-usage",
                question=f"failed {marker}",
                chunk_ids=(),
                model="m",
                answer="",
                latency_ms=10.0,
                status="error: llm_unavailable",
            )
        )
    finally:
        db.close()
    body = admin.get("/v1/usage", params={"days": 7}).json()
    assert set(body) == {
        "since", "questions_per_day", "latency_ms", "feedback", "top_documents", "unanswered",
    }  # fmt: skip
    days = body["questions_per_day"]
    assert len(days) == 7
    assert days[-1]["date"] == datetime.now(UTC).date().isoformat()
    assert days[0]["date"] == body["since"][:10]
    today = days[-1]
    assert today["questions"] == today["answered"] + today["abstained"] + today["failed"]
    assert today["answered"] >= 3
    assert today["failed"] >= 1
    assert {"embed", "generate", "total"} <= set(body["latency_ms"])
    assert body["latency_ms"]["total"]["count"] >= 3
    assert set(body["feedback"]) == {"up", "down", "ratio"}
    top = {d["doc_id"]: d for d in body["top_documents"]}
    leave = admin.get(f"/v1/documents/{api.leave_doc}").json()
    assert top[api.leave_doc]["citations"] >= 3
    assert (top[api.leave_doc]["title"], top[api.leave_doc]["source"]) == (
        leave["title"],
        leave["source"],
    )
    assert top[f"gone-{marker}"] == {
        "doc_id": f"gone-{marker}",
        "title": "(deleted)",
        "source": "(deleted)",
        "citations": 3,
    }
    assert body["unanswered"][0]["question"] == f"failed {marker}"
    assert body["unanswered"][0]["reason"] == "failed"
    assert len(admin.get("/v1/usage").json()["questions_per_day"]) == 30
    assert_error(admin.get("/v1/usage", params={"days": 0}), 400, "invalid_request", "days")
    assert_error(admin.get("/v1/usage", params={"days": 367}), 400, "invalid_request", "366")
    assert_error(admin.get("/v1/usage", params={"days": "many"}), 422, "invalid_request", "days")


def test_admin_ingests_a_server_folder_inside_the_roots(api: Api, tmp_path: Path) -> None:
    admin = api.client(api.admin)
    (root,) = api.settings.api.ingest_roots
    folder = root / "handbook"
    folder.mkdir()
    (folder / "canteen.md").write_text("# Canteen\n\nThe canteen serves lunch from noon.\n")
    (folder / "broken.docx").write_bytes(b"not a docx")
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n\nNot for the index.\n")
    (folder / "escape.md").symlink_to(outside)

    started = admin.post(
        "/v1/ingest", json={"path": str(folder), "groups": ["facilities"], "tags": ["food"]}
    )
    assert started.status_code == 202, started.text
    assert set(started.json()) == {"job_id", "status"}
    assert started.json()["status"] == "queued"
    job = wait_job(admin, started.json()["job_id"])
    assert job["status"] == "done", job
    assert job["total_files"] == job["done_files"] == 3
    results = {Path(r["source"]).name: r for r in job["results"]}
    assert results["canteen.md"]["status"] == "added"
    assert results["broken.docx"]["status"] == "failed"
    assert results["broken.docx"]["reason"]
    assert results["escape.md"]["status"] == "failed"
    assert "links are not followed" in results["escape.md"]["reason"]  # never read
    docs = {Path(d["source"]).name: d for d in admin.get("/v1/documents").json()["documents"]}
    assert (docs["canteen.md"]["groups"], docs["canteen.md"]["tags"]) == (["facilities"], ["food"])
    assert "outside.md" not in docs

    one = admin.post("/v1/ingest", json={"path": str(folder / "canteen.md")})
    job = wait_job(admin, one.json()["job_id"])
    assert (job["status"], job["total_files"]) == ("done", 1)
    assert job["results"] == [{"source": str(folder / "canteen.md"), "status": "unchanged"}]

    for path, needle in [
        (str(outside), "outside the folders"),
        (str(folder / "escape.md"), "outside the folders"),
        (str(folder / ".." / ".." / "kb"), "outside the folders"),
        (str(folder / "nope.md"), "does not exist"),
    ]:
        refused = admin.post("/v1/ingest", json={"path": path})
        assert_error(refused, 400, "invalid_request", needle)
        assert path in refused.json()["error"]["message"]
    assert str(root) in admin.post("/v1/ingest", json={"path": str(outside)}).text
    assert_error(
        admin.post("/v1/ingest", json={"path": str(folder), "recursive": True}),
        422,
        "invalid_request",
        "recursive",
    )


def test_quality_serves_the_latest_evaluation_records(api: Api) -> None:
    admin = api.client(api.admin)
    data_dir = api.settings.data_dir
    assert admin.get("/v1/quality").json() == {"retrieval": None, "answers": None}
    older = datetime(2024, 1, 1, tzinfo=UTC)
    write_eval_record(data_dir, "retrieval", "scifact", {"hybrid": {"ndcg@10": 0.7}}, older)
    write_eval_record(
        data_dir, "retrieval", "scifact", {"hybrid": {"ndcg@10": 0.71}}, older + timedelta(days=1)
    )
    (data_dir / "eval" / "retrieval-20990101T000000.json").write_text("{broken")
    body = admin.get("/v1/quality").json()
    assert body["answers"] is None
    assert body["retrieval"] == {
        "kind": "retrieval",
        "dataset": "scifact",
        "created_at": "2024-01-02T00:00:00+00:00",
        "results": {"hybrid": {"ndcg@10": 0.71}},
    }
