"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.data.make_files import sample_spec, write_docx, write_md
from tests.processes import free_port


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """A small knowledge base: a Markdown leave policy and a DOCX security policy."""
    folder = tmp_path / "kb"
    write_md(folder / "leave.md", sample_spec("leave"))
    write_docx(folder / "security.docx", sample_spec("security"))
    return folder


class Postgres:
    """A real PostgreSQL server on a free loopback port, in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self._ctl = str(bin_dir / "pg_ctl")
        self._folder = folder
        self.port = free_port()
        self._count = 0
        # PostgreSQL refuses to run as root: then its own `postgres` user runs it
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir(parents=True)
        if self._as:
            shutil.chown(folder, "postgres")
        subprocess.run(
            [
                *self._as,
                str(bin_dir / "initdb"),
                "-D",
                str(folder / "db"),
                "-A",
                "trust",
                "-U",
                "enclave",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {folder} -h 127.0.0.1 -F"
        subprocess.run(
            [
                *self._as,
                self._ctl,
                "-D",
                str(folder / "db"),
                "-o",
                options,
                "-l",
                str(folder / "server.log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def new_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        self._count += 1
        name = f"enclave_{self._count}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://enclave@127.0.0.1:{self.port}/{name}"

    def url(self, database: str) -> str:
        return f"postgresql://enclave@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            [*self._as, self._ctl, "-D", str(self._folder / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A real PostgreSQL server for the session (Debian's, installed by `make setup`)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.fail("PostgreSQL is not installed: run `make setup` (it installs postgresql)")
    root = tmp_path_factory.mktemp("postgres")
    if os.geteuid() == 0:  # the server's user must reach its folder
        for parent in [root, *root.parents]:
            if parent.stat().st_mode & 0o011 != 0o011:
                parent.chmod(parent.stat().st_mode | 0o011)
    server = Postgres(root / "server")
    try:
        yield server
    finally:
        server.stop()


PASSWORD = f"queue-pw-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway `redis-server` on loopback (no persistence), password-protected."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (`make setup` installs it)")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    with (folder / "redis.log").open("ab") as log:
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--requirepass",
                PASSWORD,
            ],
            stdout=log,
            stderr=log,
        )
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, (folder / "redis.log").read_text(errors="replace")
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    client.close()
    yield url
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
