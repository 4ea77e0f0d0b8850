"""``enclave up``: the API and the web UI as two child processes, started in order, stopped
together."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from backends.sql.app import AppDatabase
from core.errors import ConfigError
from core.settings import Settings

KEY_NAME = "enclave up"
API_START_S = 900  # first start assembles the bundled model and loads it (minutes on 2 cores)
UI_START_S = 120
ANY_ADDRESS = ("0.0.0.0", "::")  # noqa: S104 - compared with, never bound here


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


def sign_in_link(settings: Settings, key: str) -> tuple[str, Path]:
    """A one-time sign-in token for ``key`` and the grant file the UI redeems it from
    (private to this user; removed by the first browser session that uses the link)."""
    token = secrets.token_urlsafe(32)
    grant = settings.data_dir.resolve() / "ui-signin.json"
    grant.parent.mkdir(parents=True, exist_ok=True)
    partial = grant.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"token_sha256": hashlib.sha256(token.encode()).hexdigest(), "key": key}, out)
    partial.replace(grant)
    return token, grant


def run_stack(
    settings: Settings, console: Console, kb: Path, host: str, api_port: int, ui_port: int
) -> None:
    key = session_key(settings, [])
    token, grant = sign_in_link(settings, key)
    api_url = f"http://{host}:{api_port}"
    ui_url = f"http://{host}:{ui_port}"
    local_ui = f"http://127.0.0.1:{ui_port}" if host in ANY_ADDRESS else ui_url
    env = dict(os.environ)
    env.setdefault("ENCLAVE_API__INGEST_ROOTS", json.dumps([str(kb)]))
    enclave = [sys.executable, "-m", "serving.cli"]
    console.print(f"\n[bold]2. Starting the API[/] on {api_url} (models and LLM load first)")
    api = subprocess.Popen([*enclave, "serve", "--host", host, "--port", str(api_port)], env=env)
    ui: subprocess.Popen[bytes] | None = None
    try:
        _wait_until(api, f"{api_url}/readyz", API_START_S, "the API")
        console.print(f"[bold]3. Starting the web UI[/] on {ui_url}")
        ui_env = {**env, "ENCLAVE_API_URL": api_url, "ENCLAVE_UI_SIGNIN_FILE": str(grant)}
        ui = subprocess.Popen(
            [*enclave, "ui", "--host", host, "--port", str(ui_port)],
            env=ui_env,
            stdout=subprocess.DEVNULL,
        )
        _wait_until(ui, f"{ui_url}/_stcore/health", UI_START_S, "the web UI")
        console.print(
            f"\n[bold green]Open {local_ui}/?signin={token}[/]\n(a one-time sign-in link, "
            f"for a browser on this machine; others sign in with their own key).\nAdmin key "
            f"for the API: {key} (a new one each run). API: {api_url} (OpenAPI schema at "
            f"{api_url}/openapi.json). Ctrl-C stops both.",
            highlight=False,
            soft_wrap=True,
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
        grant.unlink(missing_ok=True)
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
