"""`enclave up` (the README's run command) as a real process: sample knowledge base in,
API and UI up, a working admin key printed, both stopped by Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import ENCLAVE, SMALL_LLM, env_for, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_up_starts_the_api_and_the_ui_with_the_sample_kb_and_stops_both(tmp_path: Path) -> None:
    api_port, ui_port = free_port(), free_port()
    up = subprocess.Popen(
        [*ENCLAVE, "up", "--api-port", str(api_port), "--ui-port", str(ui_port)],
        env=env_for(tmp_path / "data", **SMALL_LLM, COLUMNS="250"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while not any("Admin key for the API" in line for line in output):
            line = up.stdout.readline()
            assert line or up.poll() is None, "".join(output)
            output.append(line)
            assert time.monotonic() < deadline, "".join(output)
        text = "".join(output)
        assert re.search(rf"Open http://127.0.0.1:{ui_port}/\?signin=[A-Za-z0-9_-]{{40,}}", text)
        assert (tmp_path / "data" / "ui-signin.json").stat().st_mode & 0o077 == 0
        key = re.search(r"enc_[0-9a-f]{12}_[A-Za-z0-9_-]+", text)
        assert key, text
        headers = {"Authorization": f"Bearer {key.group(0)}"}
        api = f"http://127.0.0.1:{api_port}"
        me = httpx.get(f"{api}/v1/me", headers=headers).json()
        assert me["role"] == "admin"
        docs = httpx.get(f"{api}/v1/documents", headers=headers).json()["documents"]
        assert len(docs) == 7  # the sample knowledge base, shipped with its access rule
        assert {tuple(d["groups"]) for d in docs} == {("everyone",)}
        assert httpx.get(f"http://127.0.0.1:{ui_port}/_stcore/health").status_code == 200
    finally:
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=120)
    assert up.returncode == 0, "".join(output) + rest
    assert not (tmp_path / "data" / "ui-signin.json").exists()  # the link dies with the run
    for port in (api_port, ui_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
