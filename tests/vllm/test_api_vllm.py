"""`/v1/ask` through the real app with vLLM as the configured LLM (no embedded server).

Run with `make test-vllm`; skipped otherwise (see conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backends.container import build_container
from backends.sql.app import AppDatabase
from core.protocols import Embedder
from core.settings import LLMSettings, ModelSettings, Settings
from ingest.pipeline import Ingestor
from serving.api import create_app
from tests.data.make_files import sample_spec, write_md
from tests.sse import sse_list

from .conftest import CONTEXT_WINDOW, SERVED_NAME

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def client(tmp_path: Path, vllm_url: str, embedder: Embedder) -> Iterator[tuple[TestClient, str]]:
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    model = ModelSettings(name=SERVED_NAME, base_url=vllm_url, context_window=CONTEXT_WINDOW)
    settings = Settings(
        data_dir=tmp_path / "data",
        llm=LLMSettings(models=[model], max_answer_tokens=64, temperature=0.0),
    )
    container = build_container(settings, embedder=embedder)
    Ingestor(container).run([tmp_path / "kb"], groups=["staff"])
    db = AppDatabase(settings.database_url)
    _, key = db.create_key("user", ["staff"])
    db.close()
    try:
        with TestClient(create_app(settings, container)) as test_client:
            test_client.headers["Authorization"] = f"Bearer {key}"
            yield test_client, key
    finally:
        container.close()
    assert container.embedded_llm is None  # vLLM served every answer


def test_ask_through_vllm(client: tuple[TestClient, str]) -> None:
    api, _ = client
    assert api.get("/readyz").json()["checks"] == {"store": "ok", "llm": "ok"}
    body = api.post("/v1/ask", json={"question": "How many days of annual leave do I get?"}).json()
    assert body["model"] == SERVED_NAME
    assert body["answer"].strip()
    assert not body["abstained"]
    assert body["passages"]
    assert 0 < body["usage"]["completion_tokens"] <= 64
    for c in body["citations"]:
        assert c["quote"] in body["passages"][c["n"] - 1]["text"]

    streamed = api.post(
        "/v1/ask", json={"question": "How many leave days carry over?", "stream": True}
    )
    events = sse_list(streamed)
    names = [name for name, _ in events]
    assert names[0] == "retrieval"
    assert names[-2:] == ["citations", "done"]
    assert "token" in names
    done = events[-1][1]
    assert done["usage"]["completion_tokens"] > 0
