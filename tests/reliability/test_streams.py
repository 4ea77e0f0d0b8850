"""Many slow answers at once: streams hold no worker thread while the model writes, so
with 100 answers streaming from a deliberately slow OpenAI-compatible server (the
extractive LLM writing a word every 0.4 s), ``/healthz``, ``/readyz``, authentication
and ``/v1/search`` (which need AnyIO's 40 worker threads) still answer; and when the
clients go away, every answer is audited as cancelled and the server stays healthy."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.container import build_container
from backends.sql.app import AppDatabase
from core.protocols import Embedder
from core.settings import ApiSettings, Settings
from ingest.pipeline import Ingestor
from serving.api import create_app
from tests.data.make_files import sample_spec, write_md
from tests.extractive_llm import llm_settings as extractive_llm_settings
from tests.extractive_llm import running
from tests.processes import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAMS = 100
QUESTION = "How many days of annual leave do employees get?"


@pytest.fixture
def slow_llm(tmp_path: Path) -> Iterator[str]:
    """The extractive LLM writing a word every 0.4 s: answers that stay in progress."""
    with running(tmp_path / "slow-llm.log", word_delay_s=0.4) as url:
        yield url


async def hold_streams(url: str, key: str) -> dict[str, int]:
    """Open STREAMS answers, wait until each is writing, probe the API, then leave."""
    headers = {"Authorization": f"Bearer {key}"}
    writing = 0
    all_writing = asyncio.Event()
    leave = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal writing
        body = {"question": QUESTION, "stream": True}
        async with client.stream("POST", "/v1/ask", json=body, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("event: token"):
                    writing += 1
                    if writing == STREAMS:
                        all_writing.set()
                    await leave.wait()
                    return  # the client goes away mid-answer

    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(STREAMS)]
        await asyncio.wait_for(all_writing.wait(), timeout=300)
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            statuses = {
                "healthz": (await probe.get("/healthz")).status_code,
                "readyz": (await probe.get("/readyz")).status_code,
                "me": (await probe.get("/v1/me", headers=headers)).status_code,
                "search": (
                    await probe.post("/v1/search", json={"query": "annual leave"}, headers=headers)
                ).status_code,
            }
        leave.set()
        await asyncio.gather(*tasks)
    return statuses


def test_a_hundred_slow_streams_leave_the_api_responsive(
    tmp_path: Path, embedder: Embedder, slow_llm: str
) -> None:
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    settings = Settings(
        data_dir=tmp_path / "data",
        llm=extractive_llm_settings(slow_llm),
        api=ApiSettings(rate_limit_per_minute=1_000_000, max_answers_per_key=STREAMS + 10),
    )
    db = AppDatabase(settings.database_url)
    key = db.create_key("user", ["staff"])[1]
    db.close()
    container = build_container(settings, embedder=embedder)
    try:
        Ingestor(container).run([tmp_path / "kb"], groups=["staff"])
        app = create_app(settings, container)
        with Server(app) as url:
            statuses = asyncio.run(hold_streams(url, key))
            # every probe answered while the 100 answers were being written
            assert statuses == {"healthz": 200, "readyz": 200, "me": 200, "search": 200}
            services = app.state.services
            deadline = 60.0
            while deadline > 0 and any(
                services.answering.count(k.id) for k in services.db.list_keys()
            ):
                time.sleep(0.2)
                deadline -= 0.2
            after = httpx.post(
                f"{url}/v1/ask",
                json={"question": QUESTION},
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
            assert after.status_code == 200, after.text
        audit = AppDatabase(settings.database_url)
        try:
            rows = [r for r in audit.audit_since(0) if r["kind"] == "ask"]
        finally:
            audit.close()
        statuses_seen = [r["status"] for r in rows]
        assert statuses_seen.count("cancelled") == STREAMS, json.dumps(statuses_seen)
        assert statuses_seen.count("ok") == 1
    finally:
        container.close()
