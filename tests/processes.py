"""Enclave commands as real processes, for the tests that need servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ENCLAVE = [sys.executable, "-m", "serving.cli"]


SMALL_LLM = {  # the embedded LLM as the tests run it: SmolLM2-135M, short answers
    "ENCLAVE_LLM__EMBEDDED_MODEL": "smollm2-135m",
    "ENCLAVE_LLM__EMBEDDED_CONTEXT_WINDOW": "2048",
    "ENCLAVE_LLM__MAX_ANSWER_TOKENS": "48",
}


def env_for(data: Path, **extra: str) -> dict[str, str]:
    """The environment of an Enclave process on the data dir ``data``."""
    return {**os.environ, "ENCLAVE_DATA_DIR": str(data), **extra}


def run(args: list[str], data: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``enclave ARGS`` on the data dir ``data`` to the end."""
    return subprocess.run(
        [*ENCLAVE, *args], capture_output=True, text=True, env=env_for(data, **extra), timeout=600
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``enclave ARGS`` in the background, its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([*ENCLAVE, *args], env=env, stdout=out, stderr=out)


def wait_ok(process: subprocess.Popen[bytes], url: str, log: Path, limit_s: float = 300) -> None:
    """Wait until ``url`` answers 200; fail with the log if the process exits or time runs out."""
    deadline = time.monotonic() + limit_s
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready:\n{log.read_text(errors='replace')}"
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, then wait (kill after a minute); the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Server:
    """uvicorn in a thread of this process (the tests share the loaded embedder)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
