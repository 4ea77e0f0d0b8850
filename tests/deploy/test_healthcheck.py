"""docker/healthcheck.py, the image's health check, against real servers on loopback:
an HTTP server (as the API's /healthz and Streamlit's /_stcore/health answer) and Debian's
redis-server (the worker's queue; `make setup` installs it)."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.processes import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "ENCLAVE_QUEUE__URL"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=False,
        timeout=30,
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_healthy(http_server: str) -> None:
    result = check(f"{http_server}/healthz")
    assert result.returncode == 0, result.stdout


def test_http_error_status_is_unhealthy(http_server: str) -> None:
    result = check(f"{http_server}/other")
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: ")


def test_nothing_listening_is_unhealthy() -> None:
    result = check(f"http://127.0.0.1:{free_port()}/healthz")
    assert result.returncode == 1


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if server is None:
        pytest.skip("redis-server is not installed (make setup installs it)")
    port = free_port()
    options = [
        "--requirepass",
        "pw0test",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:pw0test@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_queue_healthy(redis_url: str) -> None:
    result = check("--queue", ENCLAVE_QUEUE__URL=redis_url)
    assert result.returncode == 0, result.stdout


def test_queue_wrong_password_is_unhealthy(redis_url: str) -> None:
    result = check("--queue", ENCLAVE_QUEUE__URL=redis_url.replace("pw0test", "wrong"))
    assert result.returncode == 1
    assert "wrong" not in result.stdout  # the URL's password is never printed


def test_queue_unset_is_unhealthy() -> None:
    result = check("--queue")
    assert result.returncode == 1
    assert "ENCLAVE_QUEUE__URL is not set" in result.stdout
