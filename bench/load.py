"""Load benchmark: N concurrent closed-loop clients against /v1/search and /v1/ask.

For each endpoint (``--endpoints``, default ``search,ask``) and each client count
(``--clients`` for search, default 1,4,16; ``--ask-clients`` for ask, default 1,2,4),
N client threads, each with its own ``httpx.Client``, send requests for ``--seconds``
(``--ask-seconds`` for ask) in a closed loop: a client sends its next request when its
previous one has finished. A client starts no request after the window; requests in
flight then are waited for and counted, so a level may run longer than its window (by up
to one request). Throughput is successful requests / (start of the level to the last
completion). Latency (p50/p95/p99, successful requests only) is from sending the request
to the last byte of the response; for a streamed ``/v1/ask`` (the default; ``--no-stream``
sends ``stream: false``), the time to the first ``token`` event (TTFT) is reported too.
1 client is always measured first for each endpoint, as the baseline of the same run: every
level prints its throughput and p50 relative to it.

Errors never stop a run. Each failed request is counted by kind: ``HTTP <status>
<error type>`` (e.g. ``HTTP 429 rate_limited``), an SSE ``error`` event (``SSE error
<type>``), a stream that ended without ``done``, ``empty answer`` (a 200 whose answer is
empty and not an abstention), or the exception's class (``ReadTimeout``, ``ConnectError``,
...). For /v1/ask, an answer whose completion is under half the median completion of the
same question at 1 client is counted as ``short`` (not an error: a hint that answers are
being cut off under load).

Queries: a fixed list of questions about the bundled sample knowledge base
(``serving/sample_kb``), each client starting at its own offset in the list.

The server. By default the script starts its own real ``enclave serve`` on a free loopback
port, on a temporary data dir, with the embedded stack's defaults: Qdrant Edge, the bundled
MiniLM embedder, SQLite, and the embedded llama.cpp LLM that ``enclave serve`` supervises
(``--llm-model``, sets ``ENCLAVE_LLM__EMBEDDED_MODEL``: ``qwen2.5-0.5b``, the product's
default, or ``smollm2-135m``, the fast one, or a ``.gguf`` path). Every ``ENCLAVE_*``
variable of the environment is dropped for it (``--server-env NAME=VALUE`` sets variables),
and it runs in the data dir (no ``.env`` is read). Before it starts, the sample knowledge
base is ingested as ``enclave up`` / ``enclave demo`` do (``enclave ingest
serving/sample_kb --tag sample``: default groups, ``everyone``), and a user key with the
group ``everyone`` is created with ``enclave keys create`` (``--key-per-client``: one per
client). The bundled Qwen GGUF is linked from ``.enclave/models`` when it was assembled
there, instead of assembling 0.5 GB again. The per-key rate limit
(``ENCLAVE_API__RATE_LIMIT_PER_MINUTE``, default 120 a minute) would make a closed-loop
benchmark measure the limiter, so it is set to 1,000,000 unless ``--rate-limit N`` is given
(``--rate-limit 120`` measures the product default). The data dir is removed at the end
(``--keep`` keeps it; the server's log is ``<data dir>/serve.log``, llama.cpp's
``<data dir>/logs/llama-server.log``).

``--url URL --api-key KEY[,KEY...]`` (or ``ENCLAVE_API_KEY``) drives an API that is already
running instead (keys spread over the clients); the script then starts, ingests and
configures nothing, and the LLM is whatever that server runs.

For a started server, each level also reports the CPU the server used (the ``enclave
serve`` process and its children, llama.cpp included, in cores: CPU seconds / wall
seconds), and the CPU of this script's clients, which run on the same machine. The
machine's ``uptime`` is printed before and after the run.

    python bench/load.py [--endpoints search,ask] [--clients 1,4,16] [--ask-clients 1,2,4]
                         [--seconds 30] [--ask-seconds 60] [--no-stream]
                         [--llm-model qwen2.5-0.5b|smollm2-135m|PATH] [--rate-limit N]
                         [--key-per-client] [--server-env NAME=VALUE ...] [--keep]
                         [--url URL --api-key KEY] [--timeout 300] [--json]

With ``--json`` the human-readable report (progress included) goes to stderr and stdout
gets one JSON object: ``machine``, ``config``, ``uptime_before``/``uptime_after``,
``server`` (start-up, model) and ``levels``, one per endpoint and client count, with
``clients``, ``requests``, ``ok``, ``errors``, ``errors_by_kind``, ``rps``, ``p50_ms``,
``p95_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``, ``ttft_p50_ms``/``ttft_p95_ms``/
``ttft_p99_ms`` (ask, streamed), ``completion_tokens_per_s``, ``short_answers``,
``rps_vs_baseline``, ``p50_vs_baseline``, ``server_cpu_cores``, ``client_cpu_cores``,
``load_1m_after``, and for ask every request in ``samples`` (question index in ``config.queries``,
start, latency, TTFT, completion tokens, answer length, error). Nothing here asserts on timings: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from _bootstrap import REPO, cpu_model, emit_json  # first: offline env and import paths

SAMPLE_KB = REPO / "serving" / "sample_kb"
REPO_MODELS = REPO / ".enclave" / "models"
ENDPOINTS = ("search", "ask")
LLM_MODELS = ("qwen2.5-0.5b", "smollm2-135m")
KEY_GROUPS = ("everyone",)
TOP_K = 5
NO_RATE_LIMIT = 1_000_000
SERVER_START_S = 900.0  # first start of llama.cpp with the bundled model (minutes on 2 cores)
SHORT_FRACTION = 0.5  # an answer under this share of its question's baseline completion
QUERIES: tuple[str, ...] = (
    "How many days of annual leave do employees get?",
    "How quickly must I report a phishing email, and to whom?",
    "How many days of unused leave can I carry over into the next year?",
    "What are the core working hours?",
    "How many days per week may I work remotely?",
    "What is the hotel limit per night in London?",
    "What is the full day per diem in the Netherlands?",
    "From which day of illness do I need a medical certificate?",
    "When is reception staffed in the offices?",
    "How long must a password be?",
    "Is business class reimbursed on long flights?",
    "How far in advance must I book a trip within Europe?",
    "What should I do if I lose my access badge?",
    "For how many days a year can I work from another country?",
    "When are the offices closed for the winter break?",
    "Are USB storage devices allowed on company laptops?",
    "What happens on the Monday of my first week?",
    "Within how many days must I submit travel expenses after a trip?",
    "Which multi-factor authentication methods are allowed?",
    "Can visitors use the wireless network?",
)


# -- one request ---------------------------------------------------------------------------
@dataclass
class Outcome:
    """One request: when it started (s from the level's start), how long it took, and what
    came back."""

    query: int
    started: float
    seconds: float
    error: str | None = None
    ttft: float | None = None
    hits: int | None = None
    completion_tokens: int | None = None
    answer_chars: int | None = None
    abstained: bool | None = None
    model: str | None = None


def _http_error(response: httpx.Response) -> str:
    """``HTTP <status> <error type>`` from Enclave's one error body (or the status alone)."""
    try:
        body = json.loads(response.read() or b"null")
        type_ = body["error"]["type"] if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError, httpx.HTTPError):
        type_ = None
    return f"HTTP {response.status_code}" + (f" {type_}" if type_ else "")


def _answer_done(outcome: Outcome, body: dict[str, Any]) -> None:
    answer = str(body.get("answer") or "")
    outcome.answer_chars = len(answer)
    outcome.abstained = bool(body.get("abstained"))
    outcome.model = body.get("model")
    outcome.completion_tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
    if not answer.strip() and not outcome.abstained:
        outcome.error = "empty answer"


def search_once(client: httpx.Client, query: str, outcome: Outcome) -> None:
    response = client.post("/v1/search", json={"query": query, "top_k": TOP_K})
    if response.status_code != 200:
        outcome.error = _http_error(response)
        return
    outcome.hits = len(response.json()["hits"])


def ask_once(client: httpx.Client, query: str, outcome: Outcome, stream: bool, t0: float) -> None:
    body = {"question": query, "stream": stream}
    if not stream:
        response = client.post("/v1/ask", json=body)
        if response.status_code != 200:
            outcome.error = _http_error(response)
            return
        _answer_done(outcome, response.json())
        return
    with client.stream("POST", "/v1/ask", json=body) as response:
        if response.status_code != 200:
            outcome.error = _http_error(response)
            return
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "token" and outcome.ttft is None:
                    outcome.ttft = time.perf_counter() - t0
                elif event == "done":
                    _answer_done(outcome, json.loads(line[5:]))
                    return
                elif event == "error":
                    data = json.loads(line[5:])
                    outcome.error = f"SSE error {data.get('error', {}).get('type', '?')}"
                    return
            elif not line:
                event = "message"
    outcome.error = "stream ended without done"


def request_once(
    endpoint: str, client: httpx.Client, query_index: int, stream: bool, level_t0: float
) -> Outcome:
    """One request; every failure becomes ``Outcome.error``, never an exception."""
    query = QUERIES[query_index % len(QUERIES)]
    t0 = time.perf_counter()
    outcome = Outcome(query=query_index % len(QUERIES), started=t0 - level_t0, seconds=0.0)
    try:
        if endpoint == "search":
            search_once(client, query, outcome)
        else:
            ask_once(client, query, outcome, stream, t0)
    except httpx.HTTPError as exc:
        outcome.error = exc.__class__.__name__
    except Exception as exc:  # noqa: BLE001 - a malformed body, ...: counted, never fatal
        outcome.error = f"{exc.__class__.__name__} (client)"
    outcome.seconds = time.perf_counter() - t0
    return outcome


# -- CPU accounting ------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (Linux ``/proc``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) of ``pid`` and its descendants so far."""
    if pid is None or not Path("/proc").is_dir():
        return None
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICKS


# -- one level -----------------------------------------------------------------------------
@dataclass
class Level:
    endpoint: str
    clients: int
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    load_after: float | None = None


def run_level(
    endpoint: str,
    n: int,
    seconds: float,
    base_url: str,
    keys: list[str],
    stream: bool,
    timeout: float,
    server_pid: int | None,
) -> Level:
    """``n`` closed-loop clients for ``seconds``; in-flight requests are waited for."""
    level = Level(endpoint, n, seconds)
    clients = [
        httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {keys[k % len(keys)]}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            trust_env=False,
        )
        for k in range(n)
    ]
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def loop(k: int) -> None:
        i = k * max(1, len(QUERIES) // n)  # each client at its own place in the list
        start.wait()
        t0 = level_t0
        while time.perf_counter() - t0 < seconds:
            outcome = request_once(endpoint, clients[k], i, stream, t0)
            i += 1
            with lock:
                level.outcomes.append(outcome)

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(n)]
    for thread in threads:
        thread.start()
    cpu0 = tree_cpu_s(server_pid)
    own0 = time.process_time()
    level_t0 = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    level.wall_s = time.perf_counter() - level_t0
    cpu1 = tree_cpu_s(server_pid)
    level.server_cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    level.client_cpu_s = time.process_time() - own0
    level.load_after = _load()
    for client in clients:
        client.close()
    return level


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


def summarise(level: Level, baseline_tokens: dict[int, float] | None) -> dict[str, Any]:
    """The level's figures (JSON-ready). ``baseline_tokens``: median completion tokens per
    question at 1 client (for short answers)."""
    ok = [o for o in level.outcomes if o.error is None]
    latencies = [o.seconds for o in ok]
    ttfts = [o.ttft for o in ok if o.ttft is not None]
    kinds = Counter(o.error for o in level.outcomes if o.error is not None)
    result: dict[str, Any] = {
        "endpoint": level.endpoint,
        "clients": level.clients,
        "seconds": level.seconds,
        "wall_s": round(level.wall_s, 2),
        "requests": len(level.outcomes),
        "ok": len(ok),
        "errors": sum(kinds.values()),
        "errors_by_kind": dict(kinds.most_common()),
        "rps": round(len(ok) / level.wall_s, 3) if level.wall_s > 0 else None,
        "p50_ms": _ms(_pct(latencies, 50)),
        "p95_ms": _ms(_pct(latencies, 95)),
        "p99_ms": _ms(_pct(latencies, 99)),
        "mean_ms": _ms(sum(latencies) / len(latencies)) if latencies else None,
        "max_ms": _ms(max(latencies)) if latencies else None,
        "server_cpu_cores": (
            round(level.server_cpu_s / level.wall_s, 2)
            if level.server_cpu_s is not None and level.wall_s > 0
            else None
        ),
        "client_cpu_cores": round(level.client_cpu_s / level.wall_s, 2) if level.wall_s else None,
        "load_1m_after": level.load_after,
    }
    if level.endpoint == "search":
        hits = [o.hits for o in ok if o.hits is not None]
        result["hits_per_query"] = round(sum(hits) / len(hits), 2) if hits else None
        return result
    tokens = [o.completion_tokens or 0 for o in ok]
    result.update(
        {
            "ttft_p50_ms": _ms(_pct(ttfts, 50)),
            "ttft_p95_ms": _ms(_pct(ttfts, 95)),
            "ttft_p99_ms": _ms(_pct(ttfts, 99)),
            "completion_tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else None,
            "completion_tokens_per_s": round(sum(tokens) / level.wall_s, 2)
            if level.wall_s
            else None,
            "abstained": sum(1 for o in ok if o.abstained),
            "models": sorted({o.model for o in ok if o.model}),
        }
    )
    short = None
    if baseline_tokens:
        short = sum(
            1
            for o in ok
            if not o.abstained
            and o.query in baseline_tokens
            and (o.completion_tokens or 0) < SHORT_FRACTION * baseline_tokens[o.query]
        )
    result["short_answers"] = short
    result["samples"] = [  # few per level: each answer, in the order they finished
        {
            "query": o.query,
            "started_s": round(o.started, 2),
            "ms": _ms(o.seconds),
            "ttft_ms": _ms(o.ttft),
            "completion_tokens": o.completion_tokens,
            "answer_chars": o.answer_chars,
            "error": o.error,
        }
        for o in level.outcomes
    ]
    return result


def baseline_tokens_of(level: Level) -> dict[int, float]:
    """Median completion tokens per question among a level's successful, non-abstained answers."""
    per: dict[int, list[float]] = {}
    for o in level.outcomes:
        if o.error is None and not o.abstained and o.completion_tokens is not None:
            per.setdefault(o.query, []).append(float(o.completion_tokens))
    return {q: _pct(v, 50) or 0.0 for q, v in per.items()}


# -- the server ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        return f"load average: {load}"


class Server:
    """A real ``enclave serve`` on a temporary data dir with the sample KB ingested."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.data_dir = Path(tempfile.mkdtemp(prefix="enclave-bench-load-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.keys: list[str] = []
        self.info: dict[str, Any] = {"data_dir": str(self.data_dir)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
        env.update(
            {
                "ENCLAVE_DATA_DIR": str(self.data_dir),
                "ENCLAVE_LLM__EMBEDDED_MODEL": args.llm_model,
                "ENCLAVE_API__RATE_LIMIT_PER_MINUTE": str(args.rate_limit or NO_RATE_LIMIT),
                "ENCLAVE_LOG__LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
            }
        )
        for item in args.server_env:
            name, _, value = item.partition("=")
            env[name] = value
        self.env = env

    def _cli(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "serving.cli", *argv],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.data_dir,
            timeout=timeout,
            check=False,
        )

    def _link_qwen(self) -> None:
        """Link the bundled Qwen GGUF assembled in ``.enclave/models`` (saves 0.5 GB)."""
        if self.args.llm_model != "qwen2.5-0.5b":
            return
        from backends.llama_server import QWEN_FILE

        source = REPO_MODELS / QWEN_FILE
        stamp = source.with_suffix(".sha256")
        if source.is_file() and stamp.is_file():
            target = self.data_dir / "models"
            target.mkdir(parents=True, exist_ok=True)
            (target / QWEN_FILE).symlink_to(source)
            shutil.copy(stamp, target / stamp.name)
            self.info["model_file"] = f"linked from {source}"

    def start(self, n_keys: int) -> None:
        say = self._say
        say(f"server: data dir {self.data_dir}; ingesting the sample knowledge base ...")
        started = time.perf_counter()
        ingested = self._cli("ingest", str(SAMPLE_KB), "--tag", "sample", "--json")
        if ingested.returncode != 0:
            raise SystemExit(f"enclave ingest failed ({ingested.returncode}):\n{ingested.stderr}")
        report = json.loads(ingested.stdout)
        self.info["ingest"] = {
            "documents": report.get("added"),
            "chunks": report.get("chunks_written"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        say(
            f"server: ingested {report.get('added')} documents, {report.get('chunks_written')} "
            f"chunks in {self.info['ingest']['seconds']} s; creating {n_keys} user key(s) ..."
        )
        for i in range(n_keys):
            created = self._cli(
                *("keys", "create", "--role", "user", "--groups", ",".join(KEY_GROUPS)),
                *("--name", f"bench-load-{i}", "--json"),
            )
            if created.returncode != 0:
                raise SystemExit(f"enclave keys create failed:\n{created.stderr}")
            self.keys.append(str(json.loads(created.stdout)["key"]))
        self._link_qwen()
        log = self.data_dir / "serve.log"
        say(f"server: starting enclave serve on {self.url} (LLM {self.args.llm_model}) ...")
        started = time.perf_counter()
        with log.open("ab") as handle:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "serving.cli", "serve"),
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                ],
                env=self.env,
                cwd=self.data_dir,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"enclave serve exited:\n{log.read_text(errors='replace')}")
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=5, trust_env=False)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"enclave serve not ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        self.info["startup_s"] = round(time.perf_counter() - started, 1)
        self.info["pid"] = self.process.pid
        say(f"server: ready in {self.info['startup_s']} s")

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.args.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# -- report --------------------------------------------------------------------------------
def _f(value: Any, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(result: dict[str, Any], out: TextIO) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    cfg, host = result["config"], result["machine"]
    line()
    line("=" * 100)
    line("Enclave load benchmark: closed-loop clients against the API")
    line("=" * 100)
    line(
        f"machine: {host['nproc']} cores ({host['cpu']}), Python {host['python']}, "
        f"{host['platform']}"
    )
    line(f"uptime before: {result['uptime_before']}")
    line(f"uptime after:  {result['uptime_after']}")
    server = result["server"]
    if cfg["url"]:
        line(f"server: {cfg['url']} (already running; LLM as it is configured there)")
    else:
        external = any(e.startswith("ENCLAVE_LLM__MODELS=") for e in cfg["server_env"])
        llm = (
            "the LLM server(s) of ENCLAVE_LLM__MODELS (below)"
            if external
            else f"embedded llama.cpp ENCLAVE_LLM__EMBEDDED_MODEL={cfg['llm_model']}"
        )
        line(
            f"server: enclave serve started by this script on {server.get('url')} (start-up "
            f"{server.get('startup_s')} s): Qdrant Edge, bundled MiniLM, SQLite, {llm}"
        )
        ingest = server.get("ingest", {})
        line(
            f"        sample KB: {ingest.get('documents')} documents, {ingest.get('chunks')} "
            f"chunks; rate limit {cfg['rate_limit_per_minute']:,}/min per key; "
            f"{cfg['keys']} user key(s) (groups {'+'.join(KEY_GROUPS)})"
        )
        if cfg["server_env"]:
            line(f"        extra settings: {' '.join(cfg['server_env'])}")
    models = sorted({m for lv in result["levels"] for m in lv.get("models", [])})
    if models:
        line(f"LLM answering (from the answers): {', '.join(models)}")
    line(
        f"requests: /v1/search top_k {TOP_K} (hybrid, the default mode); /v1/ask "
        f"{'stream: true (TTFT = first token event)' if cfg['stream'] else 'stream: false'}; "
        f"{len(QUERIES)} sample-KB questions round robin"
    )
    line(
        f"windows: search {cfg['seconds']:g} s, ask {cfg['ask_seconds']:g} s per level; no new "
        "request after the window, in-flight ones finish and count; latency = successful requests"
    )
    line()
    header = (
        f"{'endpoint':8} {'clients':>7} {'reqs':>6} {'ok':>6} {'err':>5} {'req/s':>8} "
        f"{'x base':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'TTFT p50':>9} "
        f"{'TTFT p95':>9} {'srv CPU':>7} {'cli CPU':>7}"
    )
    line(header)
    line("-" * len(header))
    for lv in result["levels"]:
        line(
            f"{lv['endpoint']:8} {lv['clients']:>7} {lv['requests']:>6} {lv['ok']:>6} "
            f"{lv['errors']:>5} {_f(lv['rps'], ',.2f'):>8} "
            f"{_f(lv.get('rps_vs_baseline'), '.2f'):>6} {_f(lv['p50_ms']):>9} "
            f"{_f(lv['p95_ms']):>9} {_f(lv['p99_ms']):>9} {_f(lv.get('ttft_p50_ms')):>9} "
            f"{_f(lv.get('ttft_p95_ms')):>9} {_f(lv['server_cpu_cores'], '.2f'):>7} "
            f"{_f(lv['client_cpu_cores'], '.2f'):>7}"
        )
    line()
    line(
        "x base: throughput relative to 1 client of the same endpoint in this run; srv CPU: "
        "cores used by enclave serve + llama.cpp; cli CPU: cores used by this script's clients"
    )
    asks = [lv for lv in result["levels"] if lv["endpoint"] == "ask"]
    if asks:
        line()
        line("ask answers: clients, mean completion tokens, completion tokens/s, abstained, short")
        for lv in asks:
            line(
                f"  {lv['clients']:>3} clients: {_f(lv['completion_tokens_mean'])} tokens/answer, "
                f"{_f(lv['completion_tokens_per_s'], '.2f')} tokens/s, {lv['abstained']} "
                f"abstained, {_f(lv['short_answers'], 'd')} short (under "
                f"{SHORT_FRACTION:.0%} of the question's 1-client completion)"
            )
    errors = [lv for lv in result["levels"] if lv["errors"]]
    line()
    if not errors:
        line("errors: none")
    else:
        line("errors by kind:")
        for lv in errors:
            kinds = ", ".join(f"{k} x{v}" for k, v in lv["errors_by_kind"].items())
            line(f"  {lv['endpoint']} {lv['clients']} clients: {kinds}")
    for note in result["notes"]:
        line()
        line(note)


# -- main ----------------------------------------------------------------------------------
def _ints(text: str, option: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        values = [int(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"{option} takes comma-separated integers, not {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{option} takes client counts of at least 1")
    return values


def _with_baseline(counts: list[int]) -> list[int]:
    """1 first (the baseline), then the others in order, without repeats."""
    return [1, *sorted(set(counts) - {1})]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--endpoints", default="search,ask", help="comma-separated: search, ask (default both)"
    )
    parser.add_argument(
        "--clients", default="1,4,16", help="client counts for /v1/search (default 1,4,16)"
    )
    parser.add_argument(
        "--ask-clients", default="1,2,4", help="client counts for /v1/ask (default 1,2,4)"
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="window per /v1/search level (default 30)"
    )
    parser.add_argument(
        "--ask-seconds",
        type=float,
        default=None,
        help="window per /v1/ask level (default: --seconds; answers take seconds each)",
    )
    parser.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="/v1/ask with stream: false (no TTFT)",
    )
    parser.add_argument(
        "--llm-model",
        default="qwen2.5-0.5b",
        help="ENCLAVE_LLM__EMBEDDED_MODEL of the started server: qwen2.5-0.5b (the default), "
        "smollm2-135m (fast, weak) or a .gguf path",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="ENCLAVE_API__RATE_LIMIT_PER_MINUTE of the started server (default: "
        f"{NO_RATE_LIMIT:,}, i.e. off; the product default is 120)",
    )
    parser.add_argument(
        "--key-per-client",
        action="store_true",
        help="create one user key per client (default: one key shared by all clients)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of the started server, e.g. ENCLAVE_LLM__EMBEDDED_THREADS=1 "
        "or OMP_NUM_THREADS=1 (repeatable)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data dir (default: delete)"
    )
    parser.add_argument("--url", default=None, help="drive this running API instead")
    parser.add_argument(
        "--api-key",
        default=None,
        help="with --url: a user key, or several comma-separated (or ENCLAVE_API_KEY)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="client read timeout in seconds (default 300)"
    )
    parser.add_argument(
        "--warm-up", type=int, default=2, help="uncounted requests per endpoint first (default 2)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints or any(e not in ENDPOINTS for e in endpoints):
        parser.error(f"--endpoints takes a comma-separated subset of {', '.join(ENDPOINTS)}")
    counts = {
        "search": _with_baseline(_ints(args.clients, "--clients", parser)),
        "ask": _with_baseline(_ints(args.ask_clients, "--ask-clients", parser)),
    }
    ask_seconds = args.ask_seconds if args.ask_seconds is not None else args.seconds
    if args.seconds <= 0 or ask_seconds <= 0 or args.timeout <= 0:
        parser.error("--seconds, --ask-seconds and --timeout must be positive")
    if args.rate_limit is not None and args.rate_limit < 1:
        parser.error("--rate-limit must be at least 1")
    if args.llm_model not in LLM_MODELS and not Path(args.llm_model).is_file():
        parser.error(f"--llm-model: {', '.join(LLM_MODELS)} or an existing .gguf file")
    for item in args.server_env:
        if not item.partition("=")[0].isidentifier() or "=" not in item:
            parser.error(f"--server-env takes NAME=VALUE, not {item!r}")
    keys: list[str] = []
    if args.url:
        raw = args.api_key or os.environ.get("ENCLAVE_API_KEY", "")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not keys:
            parser.error("--url needs --api-key (or ENCLAVE_API_KEY)")
    out = sys.stderr if args.json else sys.stdout

    host = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "httpx": httpx.__version__,
    }
    before = uptime()
    print(f"uptime before: {before}", file=out, flush=True)
    server: Server | None = None
    levels: list[dict[str, Any]] = []
    server_info: dict[str, Any] = {}
    try:
        if args.url:
            base_url = args.url.rstrip("/")
            try:
                httpx.get(f"{base_url}/healthz", timeout=10, trust_env=False).raise_for_status()
            except httpx.HTTPError as exc:
                raise SystemExit(f"the API at {base_url} does not answer /healthz: {exc}") from exc
            server_info = {"url": base_url}
        else:
            server = Server(args, out)
            n_keys = max(max(counts[e]) for e in endpoints) if args.key_per_client else 1
            server.start(n_keys)
            keys = server.keys
            base_url = server.url
            server_info = {**server.info, "url": base_url}
        for endpoint in endpoints:
            seconds = args.seconds if endpoint == "search" else ask_seconds
            if args.warm_up:
                print(f"{endpoint}: {args.warm_up} warm-up request(s) ...", file=out, flush=True)
                warm = run_level_warm(endpoint, args, base_url, keys)
                if warm:
                    print(f"  warm-up errors: {warm}", file=out, flush=True)
            baseline: dict[str, Any] | None = None
            baseline_tokens: dict[int, float] | None = None
            for n in counts[endpoint]:
                print(f"{endpoint}: {n} client(s), {seconds:g} s ...", file=out, flush=True)
                level = run_level(
                    endpoint,
                    n,
                    seconds,
                    base_url,
                    keys,
                    args.stream,
                    args.timeout,
                    server.pid if server else None,
                )
                if endpoint == "ask" and n == 1:
                    baseline_tokens = baseline_tokens_of(level)
                row = summarise(level, baseline_tokens)
                if n == 1:
                    baseline = row
                if baseline and baseline["rps"] and row["rps"] is not None:
                    row["rps_vs_baseline"] = round(row["rps"] / baseline["rps"], 2)
                if baseline and baseline["p50_ms"] and row["p50_ms"] is not None:
                    row["p50_vs_baseline"] = round(row["p50_ms"] / baseline["p50_ms"], 2)
                levels.append(row)
                print(
                    f"  {row['ok']} ok, {row['errors']} errors, {_f(row['rps'], ',.2f')} req/s, "
                    f"p50 {_f(row['p50_ms'])} ms, p95 {_f(row['p95_ms'])} ms"
                    + (f" ({row['errors_by_kind']})" if row["errors"] else ""),
                    file=out,
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    after = uptime()
    notes = [
        "Clients run in this process, on the same machine as the server: their CPU (cli CPU) "
        "is taken from the same cores.",
    ]
    if "ask" in endpoints:
        notes.append(
            "/v1/ask: a llama.cpp server generates one answer at a time, so more clients "
            "wait for it: throughput stays flat and latency grows with the queue. The embedded "
            "one, as `enclave serve` starts it, ends the answer it is generating when another "
            "request arrives (llama_cpp.server's interrupt_requests), which shows here as "
            "'empty answer' errors and short answers."
        )
    result: dict[str, Any] = {
        "kind": "load",
        "machine": host,
        "config": {
            "endpoints": endpoints,
            "clients": counts["search"] if "search" in endpoints else None,
            "ask_clients": counts["ask"] if "ask" in endpoints else None,
            "seconds": args.seconds,
            "ask_seconds": ask_seconds,
            "stream": args.stream,
            "url": args.url,
            "llm_model": None if args.url else args.llm_model,
            "rate_limit_per_minute": None if args.url else (args.rate_limit or NO_RATE_LIMIT),
            "keys": len(keys),
            "server_env": args.server_env,
            "timeout_s": args.timeout,
            "warm_up": args.warm_up,
            "queries": list(QUERIES),
            "top_k": TOP_K,
        },
        "uptime_before": before,
        "uptime_after": after,
        "server": server_info,
        "levels": levels,
        "notes": notes,
    }
    print_report(result, out)
    emit_json(result, args.json)
    return 0


def run_level_warm(
    endpoint: str, args: argparse.Namespace, base_url: str, keys: list[str]
) -> dict[str, int]:
    """``--warm-up`` uncounted requests, one after another; their errors by kind."""
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {keys[0]}"},
        timeout=httpx.Timeout(args.timeout, connect=10.0),
        trust_env=False,
    ) as client:
        t0 = time.perf_counter()
        outcomes = [request_once(endpoint, client, i, args.stream, t0) for i in range(args.warm_up)]
    return dict(Counter(o.error for o in outcomes if o.error))


if __name__ == "__main__":
    sys.exit(main())
