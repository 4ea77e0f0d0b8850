"""Ingestion on `enclave worker` processes through a real Redis server (started here).

Everything runs as real processes: `redis-server` on a free loopback port (with a
password, which must never show up in any output), two `enclave worker`s, and
`enclave ingest` with ENCLAVE_QUEUE__URL set, compared with an in-process run of the
same files on a separate data dir.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from rq.serializers import JSONSerializer

from tests.data.make_files import BAD_FILES
from tests.integration.conftest import PASSWORD
from tests.processes import ENCLAVE, env_for, run, start, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPARED = ("added", "updated", "unchanged", "deleted", "chunks_written")
_TOPICS = (
    "annual leave",
    "travel expenses",
    "laptop security",
    "office access",
    "parental leave",
    "remote work",
)


class Cluster:
    """`enclave worker` processes on one data dir and queue, and `enclave ingest` runs."""

    def __init__(self, url: str, data: Path, logs: Path, files_per_task: int) -> None:
        self.env = env_for(
            data,
            ENCLAVE_QUEUE__URL=url,
            ENCLAVE_QUEUE__NAME=f"test-{uuid.uuid4().hex[:8]}",
            ENCLAVE_QUEUE__FILES_PER_TASK=str(files_per_task),
            ENCLAVE_LOG__LEVEL="INFO",
        )
        self.data = data
        self.logs = logs
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: list[str] = []

    def start(self, name: str, *args: str) -> None:
        log = self.log(name)
        self.workers[name] = start(["worker", "--name", name, *args], self.env, log)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 600  # the model loads slowly on a busy machine
        for name, process in self.workers.items():
            log = self.log(name)
            while f"enclave worker {name} ready" not in log.read_text(errors="replace"):
                assert process.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.2)

    def ingest(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*ENCLAVE, "ingest", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=600,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def everything_printed(self) -> str:
        logs = [self.log(name).read_text(errors="replace") for name in self.workers]
        return "\n".join([*self.outputs, *logs])

    def stop(self) -> None:
        for process in self.workers.values():
            stop(process)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Callable[[int], Cluster]]:
    made: list[Cluster] = []

    def make(files_per_task: int) -> Cluster:
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        made.append(Cluster(redis_url, tmp_path / "data-queue", logs, files_per_task))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def write_corpus(folder: Path, count: int, paragraphs: int = 2) -> None:
    """``count`` small Markdown and text files with distinct, searchable content."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        topic = _TOPICS[i % len(_TOPICS)]
        body = [
            f"Rule {i}.{p}: for {topic}, staff member {i} must file form F-{i:03d}-{p} "
            f"with their manager within {i + p + 2} working days, and keep a copy."
            for p in range(paragraphs)
        ]
        if i % 2:
            text = f"# {topic.title()} note {i}\n\n## Procedure\n\n" + "\n\n".join(body)
            (folder / f"note-{i:02d}.md").write_text(text + "\n", encoding="utf-8")
        else:
            text = f"{topic.title()} memo {i}\n\n" + "\n\n".join(body)
            (folder / f"memo-{i:02d}.txt").write_text(text + "\n", encoding="utf-8")


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    row = {key: report[key] for key in COMPARED}
    row["failed"] = sorted((f["source"], f["reason"]) for f in report["failed"])
    return row


def documents(data: Path) -> dict[str, tuple[str, int]]:
    """source -> (doc id, chunks), checking that the store holds exactly the chunks the
    registry counts (no duplicates, nothing missing)."""
    listed = run(["docs", "list", "--json"], data)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    status = run(["status", "--json"], data)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["chunks"] == sum(r["chunks"] for r in rows)
    return {r["source"]: (r["doc_id"], r["chunks"]) for r in rows}


def test_workers_share_a_job_like_an_in_process_run(
    cluster: Callable[[int], Cluster], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 36)
    queued = cluster(4)  # 9 tasks
    queued.start("worker-a")
    queued.start("worker-b")
    reference = tmp_path / "data-reference"
    local = run(["ingest", str(corpus), "--json"], reference)  # while the workers load
    assert local.returncode == 0, local.stderr
    queued.wait_ready()

    first = queued.ingest(str(corpus), "--json")
    assert first.returncode == 0, first.stderr
    report = report_of(first)
    assert comparable(report) == comparable(report_of(local))
    assert report["added"] == 36
    assert set(report["workers"]) == {"worker-a", "worker-b"}  # both took tasks
    assert sum(report["workers"].values()) == 9
    assert documents(queued.data) == documents(reference)

    again = queued.ingest(str(corpus), "--json")
    assert again.returncode == 0, again.stderr
    report = report_of(again)
    assert (report["unchanged"], report["added"], report["chunks_written"]) == (36, 0, 0)
    assert report["workers"] == {}  # nothing was enqueued

    # a changed file, a deleted one and a bad one, in both data dirs
    changed = corpus / "note-01.md"
    changed.write_text(changed.read_text() + "\nA new paragraph about badges.\n")
    (corpus / "memo-02.txt").unlink()
    BAD_FILES["garbage.docx"](corpus / "garbage.docx")
    local = run(["ingest", str(corpus), "--json"], reference)
    assert local.returncode == 1, local.stderr
    second = queued.ingest(str(corpus), "--json")
    assert second.returncode == 1, second.stderr  # the same exit code: some files failed
    report = report_of(second)
    assert comparable(report) == comparable(report_of(local))
    assert (report["updated"], report["deleted"], report["unchanged"]) == (1, 1, 34)
    ((source, reason),) = comparable(report)["failed"]
    assert Path(source).name == "garbage.docx"
    assert "not a valid DOCX file" in reason
    assert documents(queued.data) == documents(reference)

    printed = queued.everything_printed()
    assert PASSWORD not in printed
    assert "Traceback" not in printed


def test_a_killed_workers_task_is_run_again_and_a_slow_task_times_out(
    cluster: Callable[[int], Cluster], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 8, paragraphs=12)
    queued = cluster(2)  # 4 tasks of a few seconds each
    queued.start("victim", "--heartbeat", "1")
    queued.start("survivor", "--heartbeat", "1")
    queued.wait_ready()

    job = subprocess.Popen(
        [*ENCLAVE, "ingest", str(corpus), "--json"],
        env=queued.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = re.compile(r"task (\S+) started on victim")
    deadline = time.monotonic() + 600
    while not (found := started.search(queued.log("victim").read_text(errors="replace"))):
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline, queued.log("victim").read_text(errors="replace")
        time.sleep(0.05)
    queued.workers["victim"].send_signal(signal.SIGKILL)  # mid-task
    queued.workers["victim"].wait()
    out, err = job.communicate(timeout=600)
    queued.outputs += [out, err]
    assert job.returncode == 0, err
    report = json.loads(out)
    assert (report["added"], report["failed"]) == (8, [])
    assert f"task {found.group(1)} started on survivor" in queued.log("survivor").read_text()
    chunks = documents(queued.data)  # exactly one copy of every chunk
    assert len(chunks) == 8
    assert sum(n for _, n in chunks.values()) == report["chunks_written"]

    # a task that runs out of time reports its unwritten file as failed
    write_corpus(tmp_path / "slow", 1, paragraphs=400)
    slow = queued.ingest(str(tmp_path / "slow"), "--json", "--task-timeout", "1")
    assert slow.returncode == 1, slow.stderr
    (failure,) = report_of(slow)["failed"]
    assert "ran out of time (1 s)" in failure["reason"]
    assert PASSWORD not in queued.everything_printed()


def test_groups_stay_with_their_rules_and_a_worker_runs_only_ingestion_tasks(
    cluster: Callable[[int], Cluster], tmp_path: Path, redis_url: str
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus / "hr", 2)
    write_corpus(corpus / "all", 2)
    queued = cluster(2)
    queued.start("worker-a")
    queued.wait_ready()

    # --groups records the rule (planned in the client, applied by the workers); the
    # routine sync of the parent without --groups keeps it
    assert queued.ingest(str(corpus / "hr"), "--groups", "hr", "--json").returncode == 0
    assert queued.ingest(str(corpus / "all"), "--groups", "staff", "--json").returncode == 0
    parent = queued.ingest(str(corpus), "--json")
    assert parent.returncode == 0, parent.stderr
    assert report_of(parent)["unchanged"] == 4
    listed = run(["docs", "list", "--json"], queued.data)
    groups = {Path(d["source"]).parent.name: d["groups"] for d in json.loads(listed.stdout)}
    assert groups == {"hr": ["hr"], "all": ["staff"]}

    # tasks travel as JSON and only Enclave's task functions run: a job naming another
    # function is refused, and a pickled job is never unpickled
    canary = tmp_path / "canary"
    canary.write_text("still here")
    connection = redis.Redis.from_url(redis_url)
    name = queued.env["ENCLAVE_QUEUE__NAME"]
    as_json = rq.Queue(name, connection=connection, serializer=JSONSerializer)
    refused = as_json.enqueue("os.remove", str(canary))
    pickled = rq.Queue(name, connection=connection).enqueue("os.remove", str(canary))
    deadline = time.monotonic() + 120
    while refused.get_status(refresh=True) not in ("failed", "finished"):
        assert time.monotonic() < deadline, queued.log("worker-a").read_text()
        time.sleep(0.2)
    assert refused.get_status() == "failed"
    assert "is not an Enclave ingestion task" in (refused.latest_result().exc_string or "")
    while pickled.get_status(refresh=True) in ("queued", "started"):
        assert time.monotonic() < deadline, queued.log("worker-a").read_text()
        time.sleep(0.2)
    assert canary.read_text() == "still here"
    assert queued.workers["worker-a"].poll() is None  # the worker stays up
    connection.close()
