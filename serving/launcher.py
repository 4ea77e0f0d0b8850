"""``enclave up``: the API and the web UI as two child processes, started in order, stopped
together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from core.errors import ConfigError
from core.settings import Settings
from serving.db import AppDatabase

KEY_NAME = "enclave up"
API_START_S = 900  # first start assembles the bundled model and loads it (minutes on 2 cores)
UI_START_S = 120


def session_key(settings: Settings, groups: list[str]) -> str:
    """A fresh admin key for this session; keys left by earlier sessions are revoked."""
    db = AppDatabase(settings.database_url)
    try:
        for key in db.list_keys():
            if key.name == KEY_NAME and key.revoked_at is None:
                db.revoke_key(key.id)
        return db.create_key("admin", groups, name=KEY_NAME)[1]
    finally:
        db.close()


def run_stack(
    settings: Settings, console: Console, kb: Path, host: str, api_port: int, ui_port: int
) -> None:
    key = session_key(settings, [])
    api_url = f"http://{host}:{api_port}"
    ui_url = f"http://{host}:{ui_port}"
    env = dict(os.environ)
    env.setdefault("ENCLAVE_API__INGEST_ROOTS", json.dumps([str(kb)]))
    enclave = [sys.executable, "-m", "serving.cli"]
    console.print(f"\n[bold]2. Starting the API[/] on {api_url} (models and LLM load first)")
    api = subprocess.Popen([*enclave, "serve", "--host", host, "--port", str(api_port)], env=env)
    ui: subprocess.Popen[bytes] | None = None
    try:
        _wait_until(api, f"{api_url}/readyz", API_START_S, "the API")
        console.print(f"[bold]3. Starting the web UI[/] on {ui_url}")
        ui_env = {**env, "ENCLAVE_API_URL": api_url, "ENCLAVE_UI_API_KEY": key}
        ui = subprocess.Popen(
            [*enclave, "ui", "--host", host, "--port", str(ui_port)],
            env=ui_env,
            stdout=subprocess.DEVNULL,
        )
        _wait_until(ui, f"{ui_url}/_stcore/health", UI_START_S, "the web UI")
        console.print(
            f"\n[bold green]Open {ui_url}[/] and sign in (the admin key is pre-filled: "
            f"{key} — a new one each run).\nAPI: {api_url} (OpenAPI schema at "
            f"{api_url}/openapi.json). Ctrl-C stops both."
        )
        while api.poll() is None and ui.poll() is None:
            time.sleep(0.5)
        raise ConfigError(
            f"{'the API' if api.poll() is not None else 'the web UI'} stopped; see its "
            "messages above"
        )
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        for child in (ui, api):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in (ui, api):
            if child is not None:
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()


def _wait_until(child: subprocess.Popen[bytes], url: str, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ConfigError(f"{what} did not start (exit code {child.returncode}); see above")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ConfigError(f"{what} was not ready at {url} after {limit_s:.0f} s")
