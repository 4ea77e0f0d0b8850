"""Permission integrity: ordinary admin actions never widen who sees a document.

Each test is a reproduction from the permission-integrity issue, run against the API
in-process (``TestClient(create_app(...))``) on real parts: the bundled embedder, the
embedded Edge store, SQLite, and the extractive LLM as a real process. Knowledge base:
``kb/hr/pay.md`` (group hr) and ``kb/dev/build.md`` (group dev), users of hr and of dev.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from backends.container import Container, build_container
from backends.sql.app import AppDatabase
from core.protocols import Embedder
from core.settings import ApiSettings, Settings
from ingest.pipeline import Ingestor
from serving.api import create_app
from tests.extractive_llm import llm_settings as extractive_llm_settings
from tests.extractive_llm import running
from tests.processes import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAY = "# Pay bands\n\nThe PAYMARK-4411 band for engineers is reviewed each April.\n"
BUILD = "# Build guide\n\nThe BUILDMARK-2020 pipeline runs on every merge request.\n"


@dataclass
class World:
    client: TestClient
    container: Container
    settings: Settings
    root: Path
    admin: str
    hr: str
    dev: str

    def as_(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def get(self, key: str, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.as_(key), **kwargs)

    def post(self, key: str, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.as_(key), **kwargs)

    def docs(self) -> dict[str, dict[str, Any]]:
        listed = self.get(self.admin, "/v1/documents").json()["documents"]
        return {d["source"]: d for d in listed}

    def doc(self, path: Path) -> dict[str, Any]:
        return self.docs()[str(path.resolve())]

    def wait(self, response: Any) -> dict[str, Any]:
        assert response.status_code == 202, response.text
        url = f"/v1/jobs/{response.json()['job_id']}"
        deadline = time.monotonic() + 300
        while (job := self.get(self.admin, url).json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        return dict(job)


@pytest.fixture
def world(tmp_path: Path, embedder: Embedder, extractive_llm: str) -> Iterator[World]:
    root = tmp_path / "kb"
    (root / "hr").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "hr" / "pay.md").write_text(PAY)
    (root / "dev" / "build.md").write_text(BUILD)
    settings = Settings(
        data_dir=tmp_path / "data",
        llm=extractive_llm_settings(extractive_llm),
        api=ApiSettings(
            ingest_roots=[root], rate_limit_per_minute=1_000_000, max_answers_per_key=1
        ),
    )
    container = build_container(settings, embedder=embedder)
    try:
        ingestor = Ingestor(container)
        assert not ingestor.run([root / "hr"], groups=["hr"]).failed
        assert not ingestor.run([root / "dev"], groups=["dev"]).failed
        db = AppDatabase(settings.database_url)
        keys = [
            db.create_key("admin")[1],
            db.create_key("user", ["hr"])[1],
            db.create_key("user", ["dev"])[1],
        ]
        db.close()
        with TestClient(create_app(settings, container)) as client:
            yield World(client, container, settings, root, *keys)
    finally:
        container.close()


def test_a_parent_sync_without_groups_keeps_every_documents_groups(world: World) -> None:
    job = world.wait(world.post(world.admin, "/v1/ingest", json={"path": str(world.root)}))
    assert job["status"] == "done"
    assert world.doc(world.root / "hr" / "pay.md")["groups"] == ["hr"]
    assert world.doc(world.root / "dev" / "build.md")["groups"] == ["dev"]
    found = world.post(world.dev, "/v1/search", json={"query": "PAYMARK-4411 pay band"})
    assert "PAYMARK" not in found.text

    # a new file no rule covers is admins only, and the job says how to share it
    (world.root / "notes.md").write_text("# Notes\n\nThe NOTEMARK-77 note.\n")
    job = world.wait(world.post(world.admin, "/v1/ingest", json={"path": str(world.root)}))
    assert world.doc(world.root / "notes.md")["groups"] == []
    assert "no access rule" in job["warnings"][0]
    for key in (world.hr, world.dev):
        assert "NOTEMARK" not in world.post(key, "/v1/search", json={"query": "NOTEMARK-77"}).text


def test_access_rules_through_the_api_are_applied_audited_and_admin_only(world: World) -> None:
    pay = world.doc(world.root / "hr" / "pay.md")
    rule = {"path": str(world.root / "hr"), "groups": ["hr", "finance"]}
    assert (
        world.client.put("/v1/access/rules", json=rule, headers=world.as_(world.hr)).status_code
        == 403
    )
    changed = world.client.put("/v1/access/rules", json=rule, headers=world.as_(world.admin))
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "prefix": str((world.root / "hr").resolve()),
        "before": ["hr"],
        "after": ["hr", "finance"],
        "documents": 1,
    }
    assert world.doc(world.root / "hr" / "pay.md")["groups"] == ["hr", "finance"]
    chunks = world.container.store.chunks(pay["doc_id"])
    assert chunks
    assert {c.groups for c in chunks} == {("hr", "finance")}  # the store, not only SQL
    listed = world.get(world.admin, "/v1/access/rules").json()
    assert {r["prefix"]: r["documents"] for r in listed["rules"]}[changed.json()["prefix"]] == 1
    assert listed["pending"] == 0
    history = world.get(world.admin, "/v1/access/history").json()["changes"]
    assert history[0]["after"] == ["hr", "finance"]
    assert history[0]["actor"].startswith("key ")

    removed = world.client.delete(
        "/v1/access/rules", params={"path": rule["path"]}, headers=world.as_(world.admin)
    )
    assert removed.status_code == 200, removed.text
    assert world.doc(world.root / "hr" / "pay.md")["groups"] == []  # admins only now
    assert world.get(world.hr, f"/v1/sources/{pay['doc_id']}").status_code == 404
    bad = {"path": str(world.root), "groups": ["hr team"]}
    refused = world.client.put("/v1/access/rules", json=bad, headers=world.as_(world.admin))
    assert refused.status_code == 400
    assert "'hr team'" in refused.json()["error"]["message"]


def test_a_download_serves_only_the_bytes_that_were_ingested(world: World) -> None:
    build = world.root / "dev" / "build.md"
    doc_id = world.doc(build)["doc_id"]
    url = f"/v1/sources/{doc_id}/file"
    ok = world.get(world.dev, url)
    assert ok.status_code == 200
    assert ok.content == BUILD.encode()
    assert "build.md" in ok.headers["content-disposition"]

    database = Path(world.settings.database_url.removeprefix("sqlite:///"))
    for target in (world.root / "hr" / "pay.md", database):  # another group's file, the DB
        build.unlink()
        build.symlink_to(target)
        swapped = world.get(world.dev, url)
        assert swapped.status_code == 409, swapped.text
        assert swapped.json()["error"]["type"] == "conflict"
        assert "PAYMARK" not in swapped.text
        assert "changed on the server since it was ingested" in swapped.json()["error"]["message"]
    build.unlink()
    build.write_text(BUILD.replace("every merge", "each"))  # edited in place
    assert world.get(world.dev, url).status_code == 409
    build.unlink()
    assert world.get(world.dev, url).status_code == 404


def test_uploads_never_share_a_path_and_leave_with_their_document(world: World) -> None:
    def upload(name: str, content: str, groups: str) -> dict[str, Any]:
        files = [("files", (name, content.encode(), "text/markdown"))]
        return world.wait(
            world.post(world.admin, "/v1/documents", files=files, data={"groups": groups})
        )

    assert (
        upload("report.md", "# Dev report\n\nThe DEVREPORT-1 figures.\n", "dev")["status"] == "done"
    )
    uploads = {d["source"]: d for d in world.docs().values() if "/uploads/" in d["source"]}
    (dev_source,) = uploads
    dev_id = uploads[dev_source]["doc_id"]
    # an hr upload of the same name, one that fails to parse, then a good one
    failed = upload("report.md", "", "hr")
    assert failed["results"][0]["status"] == "failed"
    assert (
        upload("report.md", "# HR report\n\nThe HRREPORT-9 salaries.\n", "hr")["status"] == "done"
    )
    uploads = {d["source"]: d for d in world.docs().values() if "/uploads/" in d["source"]}
    assert len(uploads) == 2  # two documents, two paths; the failed one left nothing
    assert len(list(world.settings.uploads_dir.iterdir())) == 2
    got = world.get(world.dev, f"/v1/sources/{dev_id}/file")
    assert got.status_code == 200
    assert b"DEVREPORT-1" in got.content
    assert b"HRREPORT" not in got.content
    for doc in uploads.values():
        assert world.get(world.dev, f"/v1/sources/{doc['doc_id']}").status_code == (
            200 if doc["groups"] == ["dev"] else 404
        )

    deleted = world.client.delete(f"/v1/documents/{dev_id}", headers=world.as_(world.admin))
    assert deleted.status_code == 200
    assert not Path(dev_source).exists()
    assert not Path(dev_source).parent.exists()  # the upload's folder and its rule go too
    prefixes = {r["prefix"] for r in world.get(world.admin, "/v1/access/rules").json()["rules"]}
    assert str(Path(dev_source).parent) not in prefixes

    # a long multi-byte name and a NUL byte in a server path: clear answers, not 500s
    long_name = "é" * 130 + ".md"
    job = upload(long_name, "# Long\n\nThe LONGNAME-3 file.\n", "dev")
    assert job["status"] == "done", job
    assert job["results"][0]["status"] == "added"
    nul = world.post(world.admin, "/v1/ingest", json={"path": f"{world.root}/a\x00b"})
    assert nul.status_code == 400
    assert "NUL" in nul.json()["error"]["message"]


def test_a_documents_chunks_are_shown_only_inside_the_callers_groups(world: World) -> None:
    build = world.doc(world.root / "dev" / "build.md")
    assert world.get(world.dev, f"/v1/sources/{build['doc_id']}").json()["chunks"]
    # mid-change (a job re-grouping it: the store's payloads are written before the
    # registry row), the registry still says dev, the chunks say hr
    world.container.store.set_access(build["doc_id"], ("hr",), ())
    shown = world.get(world.dev, f"/v1/sources/{build['doc_id']}")
    assert shown.status_code == 200
    assert shown.json()["chunks"] == []
    assert "BUILDMARK" not in shown.text


def test_scores_are_for_admins_and_limits_answer_clearly(world: World) -> None:
    query = {"query": "PAYMARK pay band", "mode": "sparse"}
    user_hits = world.post(world.hr, "/v1/search", json=query).json()["hits"]
    admin_hits = world.post(world.admin, "/v1/search", json=query).json()["hits"]
    assert user_hits
    assert {h["score"] for h in user_hits} == {None}  # BM25 statistics span every group
    assert all(h["relevance"] is not None for h in user_hits)
    assert all(isinstance(h["score"], float) for h in admin_hits)

    big = world.client.post(
        "/v1/search",
        content=b'{"query": "' + b"x" * 2_000_000 + b'"}',
        headers={**world.as_(world.hr), "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert big.json()["error"]["type"] == "too_large"
    many = {"query": "pay", "filters": {"doc_id": [f"d{i}" for i in range(101)]}}
    refused = world.post(world.hr, "/v1/search", json=many)
    assert refused.status_code == 400
    assert "at most 100" in refused.json()["error"]["message"]
    chat = {"messages": [{"role": "user", "content": "hi"}] * 201}
    assert world.post(world.hr, "/v1/chat/completions", json=chat).status_code == 422


@pytest.fixture
def slow_llm(tmp_path: Path) -> Iterator[str]:
    """The extractive LLM writing a word every 0.3 s: answers that stay in progress."""
    with running(tmp_path / "slow-llm.log", word_delay_s=0.3) as url:
        yield url


def test_answers_in_progress_are_capped_per_key(
    world: World, slow_llm: str, tmp_path: Path, embedder: Embedder
) -> None:
    settings = world.settings.model_copy(
        update={"llm": extractive_llm_settings(slow_llm), "data_dir": tmp_path / "slow"}
    )
    db = AppDatabase(settings.database_url)
    hr_key, dev_key = db.create_key("user", ["hr"])[1], db.create_key("user", ["dev"])[1]
    db.close()
    container = build_container(settings, embedder=embedder)
    try:
        Ingestor(container).run([world.root], groups=["hr", "dev"])
        app = create_app(settings, container)
        with Server(app) as url, httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            held_up(http, app, {"Authorization": f"Bearer {hr_key}"}, dev_key)
    finally:
        container.close()


def held_up(http: httpx.Client, app: Any, hr: dict[str, str], dev_key: str) -> None:
    body = {"question": "When is the PAYMARK pay band reviewed?", "stream": True}
    dev = {"Authorization": f"Bearer {dev_key}"}
    with http.stream("POST", "/v1/ask", json=body, headers=hr) as streaming:
        assert streaming.status_code == 200
        lines = streaming.iter_lines()  # kept: dropping it would close the stream
        assert next(lines).startswith("event: retrieval")  # the answer is under way
        second = http.post("/v1/ask", json={"question": "The build?"}, headers=hr)
        assert second.status_code == 429, second.text
        assert "answers in progress" in second.json()["error"]["message"]
        other = http.post("/v1/search", json={"query": "build"}, headers=hr)
        assert other.status_code == 200  # only answers are capped
        assert http.get("/v1/me", headers=dev).status_code == 200
    # the client left mid-answer: the cancelled answer no longer counts
    services = app.state.services
    deadline = time.monotonic() + 30
    while any(services.answering.count(k.id) for k in services.db.list_keys()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    again = http.post("/v1/search", json={"query": "pay"}, headers=hr)
    assert again.status_code == 200


def test_failed_sign_ins_are_throttled_per_address(world: World) -> None:
    bad = {"Authorization": "Bearer enc_000000000000_notarealkeynotarealkey"}
    limit = world.settings.api.auth_failures_per_minute
    statuses = [world.client.get("/v1/me", headers=bad).status_code for _ in range(limit + 1)]
    assert statuses[:limit] == [401] * limit
    assert statuses[-1] == 429
    throttled = world.get(world.hr, "/v1/me")  # keys are not even checked from there now
    assert throttled.status_code == 429
    assert "failed sign-ins" in throttled.json()["error"]["message"]


def test_readiness_details_are_for_admins(world: World, tmp_path: Path, embedder: Embedder) -> None:
    down = world.settings.model_copy(
        update={"llm": extractive_llm_settings("http://127.0.0.1:9/v1"), "data_dir": tmp_path}
    )
    db = AppDatabase(down.database_url)
    admin = db.create_key("admin")[1]
    db.close()
    container = build_container(down, embedder=embedder)
    try:
        check_readiness(down, container, admin)
    finally:
        container.close()


def check_readiness(settings: Settings, container: Container, admin: str) -> None:
    with TestClient(create_app(settings, container)) as client:
        anon = client.get("/readyz")
        assert anon.status_code == 503
        assert anon.json()["checks"]["llm"] == "unavailable"
        assert "127.0.0.1:9" not in anon.text
        detailed = client.get("/readyz", headers={"Authorization": f"Bearer {admin}"})
        assert "127.0.0.1:9" in detailed.json()["checks"]["llm"]
