"""`enclave serve` and `enclave ask` as real processes (SmolLM2 through the embedded
llama.cpp server): asking through the running server, the held-store message, shutdown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import processes
from tests.data.make_files import sample_spec, write_md
from tests.processes import SMALL_LLM, env_for, free_port, start, stop, wait_ok

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(args: list[str], data: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """``enclave ARGS`` with the small test LLM (every command of this module)."""
    return processes.run(args, data, **SMALL_LLM, **extra)


def test_serve_ask_through_it_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    assert run(["ingest", str(tmp_path / "kb"), "--groups", "staff"], data).returncode == 0
    created = run(["keys", "create", "--role", "user", "--groups", "staff", "--json"], data)
    key = json.loads(created.stdout)["key"]

    port = free_port()
    log = tmp_path / "serve.log"
    server = start(["serve", "--port", str(port)], env_for(data, **SMALL_LLM), log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ok(server, url + "/readyz", log, 180)

        held = run(["search", "annual leave"], data)
        assert held.returncode == 2
        assert "in use by another Enclave process" in held.stderr
        assert "ENCLAVE_API_URL" in held.stderr
        assert "Traceback" not in held.stderr

        remote = run(
            ["ask", "How many days of annual leave do employees get?", "--json"],
            data,
            ENCLAVE_API_URL=url,
            ENCLAVE_API_KEY=key,
        )
        assert remote.returncode == 0, remote.stderr
        answer = json.loads(remote.stdout)
        assert answer["answer"].strip()
        assert answer["model"] == "smollm2-135m-instruct"
        assert isinstance(answer["citations"], list)

        streamed = run(
            ["ask", "How many leave days carry over?"],
            data,
            ENCLAVE_API_URL=url,
            ENCLAVE_API_KEY=key,
        )
        assert streamed.returncode == 0
        assert streamed.stdout.strip()

        wrong_key = run(["ask", "leave?"], data, ENCLAVE_API_URL=url, ENCLAVE_API_KEY="enc_x_y")
        assert wrong_key.returncode == 2
        assert "401" in wrong_key.stderr
        assert "invalid or revoked API key" in wrong_key.stderr
    finally:
        code = stop(server)
    assert code == 0, log.read_text()

    # the store is free again: ask locally (starts its own embedded LLM)
    question = "How many days of annual leave do employees get?"
    local = run(["ask", question, "--json"], data)
    assert local.returncode == 0, local.stderr
    answered = json.loads(local.stdout)
    assert answered["answer"].strip()
    # a local ask is audited like an API answer (one session for every channel)
    exported = run(["audit", "export", "--since", "2000-01-01"], data)
    assert exported.returncode == 0, exported.stderr
    rows = {r["id"]: r for r in map(json.loads, exported.stdout.splitlines())}
    row = rows[answered["answer_id"]]
    assert (row["kind"], row["status"], row["question"]) == ("ask", "ok", question)
    assert row["key_id"].startswith("cli (")
    assert row["answer"] == answered["answer"]
    assert row["chunk_ids"], "the audit row names the passages the answer was given"
    assert row["model"] == "smollm2-135m-instruct"
    unknown = run(["ask", "leave?", "--model", "gpt-4"], data)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: unknown model 'gpt-4'")
    nowhere = run(
        ["ask", "leave?"], data, ENCLAVE_API_URL="http://127.0.0.1:9", ENCLAVE_API_KEY="k"
    )
    assert nowhere.returncode == 2
    assert "cannot reach the Enclave API" in nowhere.stderr
