"""Broken and hostile files (``tests/data/make_hostile.py``): decompression bombs, a
truncated PDF, HTML and Markdown nested 5,000-100,000 deep, lines without breaks, wrong
extensions, names that are not UTF-8, links that loop or lead nowhere, a named pipe.

Through a real ``enclave ingest`` and through the upload API of a real ``enclave serve``:
each bad file is reported with a reason that names it, the good files beside them are
ingested, the job finishes, and the process's peak memory stays bounded (no bomb is
inflated into memory). The plain bad inputs are in ``tests/integration/test_bad_input.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest

from backends.sql.app import AppDatabase
from core.settings import Settings
from tests.data.make_hostile import (
    MIB,
    Hostile,
    pdf_bomb,
    write_hostile_corpus,
    zip_bomb,
)
from tests.processes import ENCLAVE, env_for, free_port, run, start, stop, wait_ok

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_FILE_MB = 4
# Peak resident memory of a whole Enclave process (embedder, unstructured, spaCy) on this
# corpus is ~1.1 GB, once 2.26 GB in a full suite run on a heavily loaded machine (the
# parse thread runs further ahead of a slow embedder); one bomb inflated into memory
# adds 2-3 GB on top of the ~1 GB base.
PEAK_RSS_LIMIT_MB = 3072
SETTINGS = {"ENCLAVE_INGEST__MAX_FILE_MB": str(MAX_FILE_MB)}


def test_the_bombs_are_real(tmp_path: Path) -> None:
    """The generators' bombs are valid: small ones inflate completely, CRC and Adler-32
    checked, to the size they declare; big ones are small on disk."""
    small = zip_bomb(tmp_path / "small.docx", expanded=8 * MIB)
    with zipfile.ZipFile(small) as archive:
        assert archive.testzip() is None  # every CRC-32 right
        info = archive.getinfo("word/document.xml")
        xml = archive.read(info)
    assert len(xml) == info.file_size > 8 * MIB - MIB
    assert xml.startswith(b"<?xml")
    assert xml.endswith(b"</w:document>")
    lying = zip_bomb(tmp_path / "lying.docx", expanded=4 * MIB, declared=1000)
    with zipfile.ZipFile(lying) as archive:
        assert archive.getinfo("word/document.xml").file_size == 1000
    assert zip_bomb(tmp_path / "big.docx").stat().st_size < 4 * MIB  # inflates to 3 GiB

    pdf = pdf_bomb(tmp_path / "small.pdf", expanded=2 * MIB).read_bytes()
    stream = pdf[pdf.index(b"stream\n") + 7 : pdf.index(b"\nendstream")]
    content = zlib.decompress(stream)  # checks the Adler-32
    assert len(content) > MIB
    assert content.startswith(b"BT /F1 12 Tf")
    assert content.endswith(b"ET\n")
    assert pdf_bomb(tmp_path / "big.pdf").stat().st_size < 4 * MIB  # inflates to 1 GiB


def run_measured(args: list[str], data: Path, out: Path) -> tuple[int, str, int]:
    """``enclave ARGS`` to the end (killed after 10 minutes): exit code, stdout, and the
    process's peak resident memory in MB."""
    with (out / "stdout").open("wb") as stdout, (out / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [*ENCLAVE, *args], env=env_for(data, **SETTINGS), stdout=stdout, stderr=stderr
        )
    guard = threading.Timer(600, process.kill)  # a hang fails the test, never blocks it
    guard.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        guard.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, (out / "stdout").read_text(), usage.ru_maxrss // 1024


def check_reasons(corpus: list[Hostile], results: dict[str, str | None]) -> None:
    """``results``: file name -> failure reason, or None when ingested."""
    for hostile in corpus:
        assert hostile.shown in results, f"{hostile.what} ({hostile.shown}) is not reported"
        reason = results[hostile.shown]
        if hostile.reason is None:
            assert reason is None, f"{hostile.what} ({hostile.shown}) failed: {reason}"
        else:
            assert reason is not None, f"{hostile.what} ({hostile.shown}) was ingested"
            assert hostile.reason in reason, f"{hostile.what} ({hostile.shown}): {reason}"
            assert "Traceback" not in reason


def test_enclave_ingest_reports_every_hostile_file_and_ingests_the_rest(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    corpus = write_hostile_corpus(kb, MAX_FILE_MB)
    data = tmp_path / "data"
    # the pipe given by name is refused (opening it would block); in the folder it is skipped
    code, stdout, peak_mb = run_measured(
        ["ingest", str(kb), str(kb / "pipe.txt"), "--json"], data, tmp_path
    )
    assert code == 1, (tmp_path / "stderr").read_text()  # finished, some files failed
    report = json.loads(stdout)
    root = str(kb.resolve())
    for failure in report["failed"]:
        assert failure["source"].startswith(root + "/")  # the reason names the file
    failed = {Path(f["source"]).name: f["reason"] for f in report["failed"]}
    assert "not a regular file or folder" in failed.pop("pipe.txt")
    good = {h.shown for h in corpus if h.reason is None}
    check_reasons(corpus, {**dict.fromkeys(good), **failed})
    assert set(failed) == {h.shown for h in corpus if h.reason is not None}  # nothing else
    assert report["added"] == len(good)
    print(f"enclave ingest: peak memory {peak_mb} MB")
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak memory {peak_mb} MB"

    listed = run(["docs", "list", "--json"], data)
    assert listed.returncode == 0, listed.stderr
    docs = json.loads(listed.stdout)
    assert {Path(d["source"]).name for d in docs} == good
    assert all(d["chunks"] > 0 for d in docs)


def peak_rss_mb(pid: int) -> int:
    """Peak resident memory of a running process (Linux ``VmHWM``), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def test_hostile_uploads_are_reported_and_the_server_stays_up(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    corpus = [h for h in write_hostile_corpus(kb, MAX_FILE_MB) if h.regular]
    data = tmp_path / "data"
    db = AppDatabase(Settings(data_dir=data).database_url)
    _, admin = db.create_key("admin", ())
    db.close()
    dead_llm = [{"name": "none", "base_url": f"http://127.0.0.1:{free_port()}/v1"}]
    env = env_for(data, **SETTINGS, ENCLAVE_LLM__MODELS=json.dumps(dead_llm))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    server = start(["serve", "--port", str(port)], env, log)
    try:
        wait_ok(server, url + "/healthz", log)
        files = [
            (
                "files",
                (
                    h.upload_name,
                    (kb / os.fsdecode(h.name)).read_bytes(),
                    "application/octet-stream",
                ),
            )
            for h in corpus
        ]
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120, trust_env=False) as client:
            started = client.post("/v1/documents", files=files)
            assert started.status_code == 202, started.text
            job_url = f"/v1/jobs/{started.json()['job_id']}"
            deadline = time.monotonic() + 600
            while (job := client.get(job_url).json())["status"] not in ("done", "failed"):
                assert server.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "the ingestion job never finished"
                time.sleep(0.5)
            assert job["status"] == "done", job
            assert job["total_files"] == len(corpus)
            results = {
                r["source"]: (r.get("reason") if r["status"] == "failed" else None)
                for r in job["results"]
            }
            named = [Hostile(h.upload_name, h.reason, h.what) for h in corpus]
            check_reasons(named, results)
            assert server.poll() is None
            assert httpx.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
            documents = client.get("/v1/documents").json()["documents"]
            assert len(documents) == sum(1 for h in corpus if h.reason is None)
            peak_mb = peak_rss_mb(server.pid)
            print(f"enclave serve: peak memory {peak_mb} MB")
        assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak memory {peak_mb} MB"
    finally:
        code = stop(server)
    assert code == 0, log.read_text(errors="replace")
