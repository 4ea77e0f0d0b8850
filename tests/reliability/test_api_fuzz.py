"""API fuzzing from the OpenAPI schema (schemathesis): no operation answers 5xx, and every
response (status code, content type, headers, body, each SSE event) is one the schema
documents. schemathesis's default checks all run, among them: schema-valid requests are not
refused with 422, schema-violating ones are refused, a 405 lists the path's methods in
``Allow``, and an operation that declares the bearer key refuses a request without one or
with a wrong one.

Every operation of the schema is fuzzed with the admin key, destructive ones included
(``DELETE /v1/documents/{id}``, uploads, ingestion jobs): they work on a throwaway data dir.
Nothing is excluded. The operations a user key may call are fuzzed again with a user key
whose groups hold part of the knowledge base. What fuzzing with a live LLM and no rate limit
cannot meet (the LLM down, readiness failing, no key, a spent rate limit) is checked against
the schema by one plain test at the end.

The app runs in-process (schemathesis's ASGI transport starts and ends its lifespan per
test) on real components: the bundled embedder, the embedded Edge store with a small
knowledge base, SQLite, and the deterministic extractive LLM as a real process, so answers
retrieve, stream and cite. Generation is bounded and reproducible: a fixed seed,
``deterministic`` (Hypothesis derandomised, no example database) and ``MAX_EXAMPLES``
per operation for the fuzzing phase (the examples and coverage phases add their own,
fixed, cases).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from starlette.types import Receive, Scope, Send

from backends.container import build_container
from backends.sql.app import AppDatabase
from core.protocols import Embedder
from core.settings import ApiSettings, LLMSettings, ModelSettings, Settings
from ingest.pipeline import Ingestor
from serving.api import create_app
from tests.data.make_files import sample_spec, write_md
from tests.extractive_llm import llm_settings as extractive_llm_settings
from tests.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20_260_601
MAX_EXAMPLES = 25
ADMIN_ONLY = r"^/(metrics|healthz|readyz)$|^/v1/(documents|ingest|jobs|usage|quality)"
"""Paths a user key gets 403 on (or that need no key): fuzzed with the admin key only."""

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # the tests send a real key; schemathesis probes without it and with a wrong one
            "with-security-parameters": False,
        },
        "checks": {
            # A schema-valid request may still break a rule the schema cannot express (the
            # configured question length, a model or filter field that does not exist, a
            # path outside the ingest roots): that is the documented 400. A 422 stays a
            # failure: it would mean the schema allows what the API's validation refuses.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "429"]
            }
        },
        "operations": [
            {
                # Every multipart part is bytes on the wire: a form field or file "of the
                # wrong type" (an object, a number) arrives as valid text, so the upload is
                # rightly accepted; the check cannot tell (its other checks still run).
                "include-name": "POST /v1/documents",
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
        ],
    }
)


class AppUnderTest:
    """The ASGI app the schema's requests go to (in-process). The schema is loaded when the
    module is collected, before fixtures exist: the ``keys`` fixture sets the app."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "request the keys fixture"
        await self.app(scope, receive, send)


APP = AppUnderTest()
# The schema of the app factory (it depends on no setting or service): the same as the
# fixture's app serves at /openapi.json.
OPENAPI = create_app(Settings(data_dir=Path("/nonexistent/schema-only"))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
schema.app = APP


@dataclass(frozen=True)
class Keys:
    admin: str
    user: str


@pytest.fixture(scope="module")
def keys(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, extractive_llm: str
) -> Iterator[Keys]:
    """The API under test (:data:`APP`) on a throwaway data dir: ``leave.md`` (group staff),
    ``security.md`` (group hr), an empty folder it may ingest from; its admin key and a
    staff user key."""
    root = tmp_path_factory.mktemp("fuzz")
    write_md(root / "kb" / "staff" / "leave.md", sample_spec("leave"))
    write_md(root / "kb" / "hr" / "security.md", sample_spec("security"))
    (root / "inbox").mkdir()
    settings = Settings(
        data_dir=root / "data",
        llm=extractive_llm_settings(extractive_llm),
        api=ApiSettings(rate_limit_per_minute=1_000_000, ingest_roots=[root / "inbox"]),
    )
    container = build_container(settings, embedder=embedder)
    try:
        ingestor = Ingestor(container)
        ingestor.run([root / "kb" / "staff"], groups=["staff"])
        ingestor.run([root / "kb" / "hr"], groups=["hr"])
        db = AppDatabase(settings.database_url)
        try:
            admin = db.create_key("admin", (), name="fuzz admin")[1]
            user = db.create_key("user", ("staff",), name="fuzz user")[1]
        finally:
            db.close()
        APP.app = create_app(settings, container)
        yield Keys(admin, user)
    finally:
        APP.app = None
        container.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@schema.parametrize()
def test_every_operation_with_an_admin_key(case: schemathesis.Case, keys: Keys) -> None:
    case.call_and_validate(headers=bearer(keys.admin))


@schema.exclude(path_regex=ADMIN_ONLY).parametrize()
def test_user_operations_with_a_user_key(case: schemathesis.Case, keys: Keys) -> None:
    case.call_and_validate(headers=bearer(keys.user))


def conforms(response: httpx.Response, method: str, path: str) -> None:
    """The response's status is documented for the operation, and the rest matches."""
    documented = OPENAPI["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (method, path, response.status_code)
    schema[path][method].validate_response(response)


def test_failures_fuzzing_does_not_reach_are_documented(tmp_path: Path, embedder: Embedder) -> None:
    """With a live LLM and no rate limit, fuzzing meets no 503 or 429: here the LLM is down
    (503, or an SSE ``error`` event once the stream started), readiness fails (503), no key
    (401) and a spent rate limit (429, ``Retry-After``), each as the schema documents."""
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    dead = ModelSettings(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1")
    settings = Settings(
        data_dir=tmp_path / "data",
        llm=LLMSettings(models=[dead], retries=0, connect_timeout_s=1),
        api=ApiSettings(rate_limit_per_minute=5),
    )
    container = build_container(settings, embedder=embedder)
    try:
        Ingestor(container).run([tmp_path / "kb"], groups=["staff"])
        db = AppDatabase(settings.database_url)
        try:
            auth = bearer(db.create_key("user", ("staff",))[1])
        finally:
            db.close()
        with TestClient(create_app(settings, container)) as client:
            question = "How many days of annual leave do employees get?"
            ask = client.post("/v1/ask", json={"question": question}, headers=auth)
            assert ask.status_code == 503, ask.text
            assert ask.json()["error"]["type"] == "llm_unavailable"
            conforms(ask, "POST", "/v1/ask")
            body = {"question": question, "stream": True}
            streamed = client.post("/v1/ask", json=body, headers=auth)
            assert streamed.status_code == 200, streamed.text
            assert "event: error" in streamed.text
            conforms(streamed, "POST", "/v1/ask")
            chat = client.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": question}]},
                headers=auth,
            )
            assert chat.status_code == 503, chat.text
            conforms(chat, "POST", "/v1/chat/completions")
            ready = client.get("/readyz")
            assert ready.status_code == 503, ready.text
            conforms(ready, "GET", "/readyz")
            anonymous = client.get("/v1/me")
            assert anonymous.status_code == 401, anonymous.text
            assert anonymous.headers["www-authenticate"] == "Bearer"
            conforms(anonymous, "GET", "/v1/me")
            statuses = [client.get("/v1/me", headers=auth) for _ in range(5)]
            limited = statuses[-1]
            assert limited.status_code == 429, [r.status_code for r in statuses]
            assert int(limited.headers["retry-after"]) >= 1
            conforms(limited, "GET", "/v1/me")
    finally:
        container.close()
