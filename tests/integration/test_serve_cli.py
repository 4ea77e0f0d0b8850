"""`enclave serve` and `enclave ask` as real processes (SmolLM2 through the embedded
llama.cpp server): asking through the running server, the held-store message, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.data.make_files import sample_spec, write_md

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENCLAVE = [sys.executable, "-m", "serving.cli"]


def env_for(data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENCLAVE_DATA_DIR": str(data),
        "ENCLAVE_LLM__EMBEDDED_MODEL": "smollm2-135m",
        "ENCLAVE_LLM__EMBEDDED_CONTEXT_WINDOW": "2048",
        "ENCLAVE_LLM__MAX_ANSWER_TOKENS": "48",
        **extra,
    }


def run(args: list[str], data: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENCLAVE, *args], capture_output=True, text=True, env=env_for(data, **extra), timeout=600
    )


def test_serve_ask_through_it_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_md(tmp_path / "kb" / "leave.md", sample_spec("leave"))
    assert run(["ingest", str(tmp_path / "kb"), "--groups", "staff"], data).returncode == 0
    created = run(["keys", "create", "--role", "user", "--groups", "staff", "--json"], data)
    key = json.loads(created.stdout)["key"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*ENCLAVE, "serve", "--port", str(port)], env=env_for(data), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)

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
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()

    # the store is free again: ask locally (starts its own embedded LLM)
    local = run(["ask", "How many days of annual leave do employees get?", "--json"], data)
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["answer"].strip()
    unknown = run(["ask", "leave?", "--model", "gpt-4"], data)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: unknown model 'gpt-4'")
    nowhere = run(
        ["ask", "leave?"], data, ENCLAVE_API_URL="http://127.0.0.1:9", ENCLAVE_API_KEY="k"
    )
    assert nowhere.returncode == 2
    assert "cannot reach the Enclave API" in nowhere.stderr
