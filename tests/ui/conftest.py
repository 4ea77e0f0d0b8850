"""A real API server process on loopback for the UI tests: embedded Qdrant, MiniLM, BM25,
SQLite, and two configured models (``quick``, ``thorough``) served by the deterministic
extractive OpenAI-compatible server of ``tests/extractive_llm.py``, so every answer cites. Knowledge base: ``leave.md`` (group ``staff``) and
``salaries.md`` (group ``hr``, with a code no model could invent); an ``inbox`` folder the
server may ingest from; one tiny retrieval evaluation for the Quality page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import extractive_llm
from tests.data.beir import CORPUS, write_beir
from tests.data.make_files import sample_spec, write_md
from tests.processes import env_for, free_port, run, start, stop, wait_ok

SECRET = "QUOLLIX-5512"
SALARIES = f"""# Salary bands 2026

Engineering salary bands are reviewed every April by the compensation committee.
The approval code for band changes is {SECRET}.
"""


@dataclass(frozen=True)
class Stack:
    url: str
    admin_key: str
    user_key: str
    data: Path
    inbox: Path
    log: Path


def _key(data: Path, role: str, groups: str) -> str:
    created = run(["keys", "create", "--role", role, "--groups", groups, "--json"], data)
    assert created.returncode == 0, created.stderr
    return str(json.loads(created.stdout)["key"])


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("ui-stack")
    data = root / "data"
    write_md(root / "kb" / "staff" / "leave.md", sample_spec("leave"))
    (root / "kb" / "hr").mkdir(parents=True)
    (root / "kb" / "hr" / "salaries.md").write_text(SALARIES, encoding="utf-8")
    for folder, groups in (("staff", "staff"), ("hr", "hr")):
        done = run(["ingest", str(root / "kb" / folder), "--groups", groups], data)
        assert done.returncode == 0, done.stderr
    beir = write_beir(root / "tiny-beir", CORPUS)
    evaluated = run(["eval", "retrieval", str(beir), "--mode", "hybrid"], data)
    assert evaluated.returncode == 0, evaluated.stderr
    admin_key = _key(data, "admin", "staff")
    user_key = _key(data, "user", "staff")
    inbox = root / "inbox"
    write_md(inbox / "expenses.md", sample_spec("expenses"))

    port = free_port()
    log = root / "serve.log"
    with extractive_llm.running(log) as llm_url:
        models = [
            {"name": "quick", "base_url": llm_url, "role": "small"},
            {"name": "thorough", "base_url": llm_url, "role": "large"},
        ]
        env = env_for(
            data,
            ENCLAVE_API__INGEST_ROOTS=json.dumps([str(inbox)]),
            ENCLAVE_LLM__MODELS=json.dumps(models),
        )
        server = start(["serve", "--port", str(port)], env, log)
        try:
            wait_ok(server, f"http://127.0.0.1:{port}/readyz", log)
            yield Stack(f"http://127.0.0.1:{port}", admin_key, user_key, data, inbox, log)
        finally:
            stop(server)
