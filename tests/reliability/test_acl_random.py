"""Randomised access control: for several seeds, a random world of groups, users (API keys
with random group sets, some with none) and documents (each restricted to random groups,
some ingested without groups and so covered by no access rule: admins only), ingested with
the bundled embedder into the embedded Edge store; then every user asks every endpoint that
returns chunks, citations or document information, and receives nothing from outside their
groups.

A document is visible to a key iff their groups intersect (an admin key sees everything);
``everyone`` is a group like any other. Every document's text, title and file name carry a unique marker, so a
leak shows wherever it surfaces: in a hit, a passage, a citation, a source, and in the
answer text, since the extractive LLM (a real process) quotes the context sentence closest
to the question; a forbidden chunk in the prompt would be quoted.

The endpoints, each checked for every user:

* ``POST /v1/search``: dense, sparse and hybrid; a probe per document (its marker and
  topic), which must find it when visible and must not otherwise; filters naming a
  forbidden document (``doc_id``, ``source``);
* ``POST /v1/ask``: JSON and SSE (``retrieval`` passages, ``token``, ``citations``,
  ``done``), a follow-up in a conversation (the query rewrite), a ``doc_id`` filter naming
  a forbidden document;
* ``POST /v1/chat/completions``: JSON and SSE chunks (``citations``, ``passages``);
* ``GET /v1/sources/{doc_id}`` and ``/file``: every document; a forbidden one is a 404
  that reads like a document that does not exist;
* ``GET /v1/conversations`` and ``/v1/conversations/{id}`` (stored answers and citations);
* ``GET /v1/me`` (the key's own groups);
* admin only, a user key gets a 403 with nothing in it: ``GET /v1/documents``,
  ``/v1/documents/{doc_id}``, ``/v1/jobs``, ``/v1/usage``, ``/metrics``.

Then the world changes, as admins change it, and is checked again after each step:

* the routine sync of the parent folder, without groups (nobody's groups change);
* symbolic links in the folder to restricted documents, then another sync (not followed);
* some documents re-ingested with new groups (the store's payload rewritten in place);
* access rules changed through the API (``PUT /v1/access/rules``);
* two uploads of files with the same name for different groups, probed while their jobs
  run, then with their originals downloaded by everyone;
* one document deleted through the API.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from tests.sse import sse_list

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDS = (7, 1913, 424_242)
GROUPS = ("everyone", "staff", "hr", "finance", "legal", "eng")
N_DOCS = 8
N_USERS = 5
MARKER = re.compile(r"ZQ\d+X\d+K")
TOPICS = {  # topic: (question, sentence templates; {m} marker, {n} number, {who} a name)
    "travel": (
        "How are travel expenses reimbursed?",
        [
            "{m} travel expenses above {n} euros are reimbursed after approval by {who}.",
            "{m} train tickets for business travel are booked through the travel portal.",
            "{m} travel receipts are kept for {n} days before reimbursement claims close.",
        ],
    ),
    "leave": (
        "How many days of annual leave do employees get?",
        [
            "{m} employees get {n} days of annual leave, approved by {who}.",
            "{m} unused annual leave days carry over until the end of March.",
            "{m} leave requests are filed {n} working days in advance.",
        ],
    ),
    "security": (
        "What are the password rules for laptops?",
        [
            "{m} laptop passwords have at least {n} characters and rotate yearly.",
            "{m} lost laptops are reported to {who} within one hour.",
            "{m} laptop disks are encrypted and screens lock after {n} minutes.",
        ],
    ),
}
NAMES = ("Alma", "Bruno", "Chidi", "Dana", "Emeka", "Farah", "Goran", "Hana")


@dataclass
class Doc:
    marker: str
    topic: str
    groups: tuple[str, ...] | None  # None: ingested without groups (no rule: admins only)
    path: Path
    doc_id: str = ""

    @property
    def effective_groups(self) -> tuple[str, ...]:
        return self.groups or ()


@dataclass
class User:
    name: str
    groups: tuple[str, ...]
    key: str
    admin: bool = False
    asked: list[str] = field(default_factory=list)  # questions in their conversations


@dataclass
class World:
    seed: int
    docs: list[Doc]
    users: list[User]
    deleted: set[str] = field(default_factory=set)

    def visible(self, user: User) -> list[Doc]:
        return [
            d
            for d in self.docs
            if d.doc_id not in self.deleted
            and (user.admin or set(d.effective_groups) & set(user.groups))
        ]

    def hidden(self, user: User) -> list[Doc]:
        seen = {d.doc_id for d in self.visible(user)}
        return [d for d in self.docs if d.doc_id not in seen]


def make_world(seed: int, root: Path, db: AppDatabase) -> World:
    rng = random.Random(seed)
    docs = []
    for i in range(N_DOCS):
        marker = f"ZQ{seed}X{i}K"
        topic = rng.choice(sorted(TOPICS))
        sentences = rng.sample(TOPICS[topic][1], 2)
        text = " ".join(
            s.format(m=marker, n=rng.randint(2, 400), who=rng.choice(NAMES)) for s in sentences
        )
        path = root / "kb" / f"{marker}-{topic}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {marker} {topic} rules\n\n{text}\n", encoding="utf-8")
        groups = None if rng.random() < 0.25 else tuple(rng.sample(GROUPS, rng.randint(1, 2)))
        docs.append(Doc(marker, topic, groups, path))
    users = []
    for i in range(N_USERS):
        groups = tuple(rng.sample(GROUPS, rng.randint(0, 3)))
        users.append(User(f"user{i}", groups, db.create_key("user", groups, name=f"u{i}")[1]))
    users.append(User("admin", (), db.create_key("admin", (), name="admin")[1], admin=True))
    return World(seed, docs, users)


def ingest(container: Container, docs: list[Doc]) -> None:
    ingestor = Ingestor(container)
    for doc in docs:
        report = ingestor.run([doc.path], groups=doc.groups)
        assert not report.failed, report.failed
    ids = {Path(r.document.source).name: r.document for r in container.registry.all()}
    for doc in docs:
        assert set(ids[doc.path.name].groups) == set(doc.effective_groups)
        doc.doc_id = ids[doc.path.name].doc_id


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def world(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder, extractive_llm: str
) -> Iterator[tuple[World, TestClient, Container]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        llm=extractive_llm_settings(extractive_llm),
        api=ApiSettings(rate_limit_per_minute=1_000_000),
    )
    container = build_container(settings, embedder=embedder)
    try:
        db = AppDatabase(settings.database_url)
        try:
            world = make_world(request.param, tmp_path, db)
        finally:
            db.close()
        ingest(container, world.docs)
        with TestClient(create_app(settings, container)) as client:
            yield world, client, container
    finally:
        container.close()


def wait_job(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    for _ in range(3000):
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


# -- checking --------------------------------------------------------------------------------
class Probe:
    """One user's requests, each response checked for anything outside their groups."""

    def __init__(self, world: World, client: TestClient, user: User) -> None:
        self.world = world
        self.client = client
        self.user = user
        self.visible = {d.doc_id for d in world.visible(user)}
        self.markers = {d.marker for d in world.visible(user)}
        self.hidden = world.hidden(user)

    def request(
        self, method: str, path: str, body: Any = None, *, wrote: str = ""
    ) -> httpx.Response:
        """The response, checked: nothing of a hidden document but what the request says or
        what the user ``wrote`` before that may come back (a question in a conversation)."""
        response = self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {self.user.key}"}
        )
        sent = f"{path} {json.dumps(body)} {wrote}"
        self.no_leak(response.text, sent, where=f"{method} {path}")
        return response

    def no_leak(self, text: str, sent: str, where: str) -> None:
        """No marker or id of a hidden document in ``text``, but those in ``sent``."""
        leaked = {m for m in MARKER.findall(text) if m not in self.markers and m not in sent}
        leaked |= {d.doc_id for d in self.hidden if d.doc_id in text and d.doc_id not in sent}
        assert not leaked, self.explain(where, leaked)

    def strict(self, text: str, where: str) -> None:
        """No hidden marker in ``text`` at all (answers, hit texts: never from the request)."""
        leaked = set(MARKER.findall(text)) - self.markers
        assert not leaked, self.explain(where, leaked)

    def hits(self, hits: list[dict[str, Any]], where: str) -> set[str]:
        for hit in hits:
            assert hit["doc_id"] in self.visible, self.explain(where, {hit["doc_id"]})
            self.strict(hit["text"], where)
            self.strict(f"{hit['source']} {hit['title']}", where)
        return {h["doc_id"] for h in hits}

    def citations(self, citations: list[dict[str, Any]], where: str) -> None:
        for c in citations:
            assert c["doc_id"] in self.visible, self.explain(where, {c["doc_id"]})
            self.strict(f"{c['quote']} {c['source']} {c['title']}", where)

    def explain(self, where: str, leaked: set[str]) -> str:
        docs = {d.marker: d.effective_groups for d in self.world.docs}
        return (
            f"seed {self.world.seed}: {where}: {self.user.name} (groups {self.user.groups}) "
            f"received {sorted(leaked)}; documents' groups {docs}"
        )


def check_search(p: Probe) -> None:
    for (topic, (question, _)), mode in zip(
        TOPICS.items(), ("dense", "sparse", "hybrid"), strict=True
    ):
        r = p.request("POST", "/v1/search", {"query": question, "top_k": 50, "mode": mode})
        assert r.status_code == 200, r.text
        p.hits(r.json()["hits"], f"search {mode} {topic}")
    for doc in p.world.docs:  # each document by its marker: found iff visible
        if doc.doc_id in p.world.deleted:
            continue
        query = f"{doc.marker} {TOPICS[doc.topic][0]}"
        r = p.request("POST", "/v1/search", {"query": query, "top_k": 50, "mode": "sparse"})
        assert r.status_code == 200, r.text
        found = p.hits(r.json()["hits"], f"search probe {doc.marker}")
        assert (doc.doc_id in found) == (doc.doc_id in p.visible), p.explain(
            f"probe {doc.marker}: found={doc.doc_id in found}", set()
        )
    for doc in p.hidden[:1]:  # filters naming a hidden document find nothing
        for filters in ({"doc_id": doc.doc_id}, {"source": str(doc.path.resolve())}):
            body = {"query": f"{doc.marker} {TOPICS[doc.topic][0]}", "filters": filters}
            r = p.request("POST", "/v1/search", body)
            assert r.status_code == 200, r.text
            assert r.json()["hits"] == [], p.explain(f"search filters {filters}", set())


def check_ask(p: Probe, *, follow_up: bool) -> None:
    rng = random.Random(f"{p.world.seed}-{p.user.name}")
    topic = rng.choice(sorted(TOPICS))
    question = TOPICS[topic][0]
    if p.hidden:  # aimed at a document the user may not read: its marker and topic
        target = rng.choice(p.hidden)
        question = f"What do the {target.marker} rules say? {TOPICS[target.topic][0]}"
    r = p.request("POST", "/v1/ask", {"question": question, "top_k": 50})
    p.user.asked.append(question)
    assert r.status_code == 200, r.text
    body = r.json()
    p.strict(body["answer"], "ask answer")
    p.hits(body["passages"], "ask passages")
    p.citations(body["citations"], "ask citations")
    cid = body["conversation_id"]

    if follow_up:  # streamed, rewritten from the conversation
        follow = {"question": "And what else?", "conversation_id": cid, "stream": True}
        r = p.request("POST", "/v1/ask", follow, wrote=question)
        assert r.status_code == 200, r.text
        events = sse_list(r)
        assert [n for n, _ in events][-2:] == ["citations", "done"], r.text
        for name, payload in events:
            if name == "retrieval":
                p.hits(payload["passages"], "ask stream retrieval")
            elif name == "token":
                p.strict(payload["text"], "ask stream token")
            elif name == "citations":
                p.citations(payload["citations"], "ask stream citations")
            elif name == "done":
                p.strict(payload["answer"], "ask stream done")
                p.hits(payload["passages"], "ask stream done passages")
                p.citations(payload["citations"], "ask stream done citations")

    for doc in p.hidden[:1]:  # a filter naming a hidden document: nothing to answer from
        body_ = {"question": TOPICS[doc.topic][0], "filters": {"doc_id": doc.doc_id}}
        r = p.request("POST", "/v1/ask", body_)
        assert r.status_code == 200, r.text
        assert r.json()["abstained"], r.text
        assert r.json()["passages"] == [], r.text

    asked = " ".join(p.user.asked)
    listed = p.request("GET", "/v1/conversations", wrote=asked)
    assert cid in {c["conversation_id"] for c in listed.json()["conversations"]}
    turns = p.request("GET", f"/v1/conversations/{cid}", wrote=asked).json()["turns"]
    assert len(turns) == (2 if follow_up else 1)
    for turn in turns:
        p.strict(turn["answer"], "stored answer")
        p.citations(turn["citations"], "stored citations")


def check_chat(p: Probe) -> None:
    rng = random.Random(f"chat-{p.world.seed}-{p.user.name}")
    target = rng.choice(p.world.docs)
    question = f"{target.marker}: {TOPICS[target.topic][0]}"
    messages = [{"role": "user", "content": question}]
    r = p.request("POST", "/v1/chat/completions", {"model": "enclave", "messages": messages})
    assert r.status_code == 200, r.text
    body = r.json()
    p.strict(body["choices"][0]["message"]["content"], "chat answer")
    p.hits(body["passages"], "chat passages")
    p.citations(body["citations"], "chat citations")

    streamed = {"model": "enclave", "messages": messages, "stream": True}
    r = p.request("POST", "/v1/chat/completions", streamed)
    assert r.status_code == 200, r.text
    events = sse_list(r)
    assert events[-1] == ("message", "[DONE]"), r.text
    for name, chunk in events[:-1]:
        assert name == "message", r.text
        for choice in chunk["choices"]:
            p.strict(choice["delta"].get("content") or "", "chat stream delta")
        p.citations(chunk.get("citations", []), "chat stream citations")


def check_sources(p: Probe) -> None:
    unknown = p.request("GET", "/v1/sources/0000000000000000deadbeef").json()["error"]
    for doc in p.world.docs:
        for suffix in ("", "/file"):
            r = p.request("GET", f"/v1/sources/{doc.doc_id}{suffix}")
            if doc.doc_id in p.visible:
                assert r.status_code == 200, r.text
                assert doc.marker in r.text
                if not suffix:
                    for chunk in r.json()["chunks"]:
                        p.strict(chunk["text"], "source chunks")
            else:  # as if it did not exist
                assert r.status_code == 404, p.explain(f"source {doc.marker}{suffix}", set())
                error = r.json()["error"]
                assert error["type"] == unknown["type"]
                if not suffix:
                    assert error["message"] == unknown["message"].replace(
                        "0000000000000000deadbeef", doc.doc_id
                    )


def check_admin_only(p: Probe) -> None:
    me = p.request("GET", "/v1/me").json()
    assert (me["role"], me["groups"]) == ("user", list(p.user.groups))
    doc = p.world.docs[0]
    for path in (
        "/v1/documents",
        f"/v1/documents/{doc.doc_id}",
        "/v1/jobs",
        "/v1/usage",
        "/metrics",
    ):
        r = p.request("GET", path)
        assert r.status_code == 403, r.text
        p.strict(r.text, path)


def check_admin(world: World, client: TestClient) -> None:
    """The admin key sees every document (the probes above are not vacuous)."""
    admin = next(u for u in world.users if u.admin)
    p = Probe(world, client, admin)
    check_search(p)
    listed = p.request("GET", "/v1/documents").json()["documents"]
    assert {d["doc_id"] for d in listed} == p.visible


def check_everyone(world: World, client: TestClient, *, every_endpoint: bool) -> None:
    """Every user's probes; with ``every_endpoint``, also streams, chat and the admin
    endpoints (after a change of groups, the retrieval paths are enough: search, ask, sources)."""
    for user in world.users:
        p = Probe(world, client, user)
        if user.admin:
            check_admin(world, client)
            continue
        check_search(p)
        check_sources(p)
        check_ask(p, follow_up=every_endpoint)
        if every_endpoint:
            check_chat(p)
            check_admin_only(p)


def test_no_user_receives_anything_outside_their_groups(
    world: tuple[World, TestClient, Container],
) -> None:
    w, client, container = world
    users = [u for u in w.users if not u.admin]
    # the seed makes a world worth checking: some see something, nobody sees everything
    assert any(w.visible(u) for u in users)
    assert all(w.hidden(u) for u in users)
    check_everyone(w, client, every_endpoint=True)

    # the routine sync of the parent folder, without groups: nothing changes
    kb = w.docs[0].path.parent
    report = Ingestor(container).run([kb])
    assert (report.added, report.updated, report.failed) == (0, 0, [])
    check_everyone(w, client, every_endpoint=False)

    # links to restricted documents, next to them: reported, never read, nothing changes
    rng = random.Random(w.seed + 1)
    for i, target in enumerate(rng.sample(w.docs, 3)):
        (kb / f"link-{i}.md").symlink_to(target.path)
    report = Ingestor(container).run([kb])
    assert sorted(Path(f.source).name for f in report.failed) == [
        "link-0.md",
        "link-1.md",
        "link-2.md",
    ]
    assert (report.added, report.updated) == (0, 0)
    check_everyone(w, client, every_endpoint=False)

    # access changes: new groups for some documents (rewritten in the store in place)
    changed = rng.sample(w.docs, N_DOCS // 2)
    for doc in changed:
        doc.groups = tuple(rng.sample(GROUPS, rng.randint(1, 2)))
    ingest(container, changed)
    check_everyone(w, client, every_endpoint=False)

    # access rules changed through the API
    admin = next(u for u in w.users if u.admin)
    as_admin = {"Authorization": f"Bearer {admin.key}"}
    for doc in rng.sample(w.docs, 3):
        doc.groups = tuple(rng.sample(GROUPS, rng.randint(1, 2)))
        rule = {"path": str(doc.path), "groups": list(doc.groups)}
        put = client.put("/v1/access/rules", json=rule, headers=as_admin)
        assert put.status_code == 200, put.text
    check_everyone(w, client, every_endpoint=False)

    # two uploads named alike for different groups, probed while the jobs run
    uploads = []
    for n, groups in enumerate(rng.sample(GROUPS, 2)):
        marker = f"ZQ{w.seed}X{N_DOCS + n}K"
        topic = rng.choice(sorted(TOPICS))
        text = TOPICS[topic][1][0].format(m=marker, n=n + 5, who=NAMES[n])
        doc = Doc(marker, topic, (groups,), Path("report.md"))
        w.docs.append(doc)
        body = f"# {marker} {topic} report\n\n{text}\n".encode()
        started = client.post(
            "/v1/documents",
            files=[("files", ("report.md", body, "text/markdown"))],
            data={"groups": groups},
            headers=as_admin,
        )
        assert started.status_code == 202, started.text
        uploads.append((doc, started.json()["job_id"]))
    for user in w.users:  # the retrieval paths while the jobs run (ids not known yet)
        p = Probe(w, client, user)
        for topic, (question, _) in TOPICS.items():
            r = p.request("POST", "/v1/search", {"query": question, "top_k": 50})
            for hit in r.json()["hits"]:  # by marker: the new documents' ids are not known
                p.strict(f"{hit['text']} {hit['title']}", f"search during upload {topic}")
    for doc, job_id in uploads:
        job = wait_job(client, as_admin, job_id)
        assert job["status"] == "done", job
        listed = client.get("/v1/documents", headers=as_admin).json()["documents"]
        (record,) = [d for d in listed if f"/uploads/{job_id}/" in d["source"]]
        doc.doc_id, doc.path = record["doc_id"], Path(record["source"])
        assert record["groups"] == list(doc.groups or ())
    assert len({d.path for d in w.docs}) == len(w.docs)  # the same name, two paths
    check_everyone(w, client, every_endpoint=False)

    # a document deleted through the API is gone for everyone
    gone = rng.choice(w.docs)
    deleted = client.delete(
        f"/v1/documents/{gone.doc_id}", headers={"Authorization": f"Bearer {admin.key}"}
    )
    assert deleted.status_code == 200, deleted.text
    w.deleted.add(gone.doc_id)
    for user in w.users:
        p = Probe(w, client, user)
        check_search(p)
        r = p.request("GET", f"/v1/sources/{gone.doc_id}")
        assert r.status_code == 404, r.text
