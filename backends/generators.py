"""A Generator on OpenAI-compatible servers: vLLM, llama.cpp's server, Ollama, TGI.

One HTTP client per model, and one or more servers (replicas) serving that model
(``base_url`` and ``base_urls``). Each request goes to the replica with the fewest
requests in flight (ties in turn, so sequential requests alternate). A replica that
fails before the first token (connection refused, a timeout, HTTP 5xx or 429, the
stream breaking before any text) is skipped for a short cool-down and the request
moves to the next replica; a replica in cool-down is still tried, last, when every
other one failed too, and is used normally again once it answers or its cool-down
ends. When every replica failed only to connect, the round is repeated with
exponential backoff (``retries``). A half-streamed answer is never restarted: a
failure after the first token is an ``LLMUnavailableError`` at once. A 4xx is the
request's fault (a ``ModelError``) and is not tried elsewhere.

Streaming parses the server-sent events of ``/chat/completions`` and closes the HTTP
response when the caller stops iterating, which makes vLLM and llama.cpp stop
generating. Messages and logs name the servers by URL, without any credentials in
it; the API key is only ever sent as a header.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import ConfigError, LLMUnavailableError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Usage

logger = logging.getLogger(__name__)

_BACKOFF_S = 0.5
COOLDOWN_S = 10.0
"""How long a replica that failed is passed over (while another one answers)."""
_USERINFO = re.compile(r"(?<=://)[^/@]*@")


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (3 characters per token) for budgeting prompts."""
    return len(text) // 3 + 1


def _error_message(body: str) -> str:
    """The message of an error body: OpenAI-style ``{"error": {"message": ...}}`` (vLLM,
    llama.cpp, Ollama) or FastAPI's ``{"detail": ...}``; else the body's start."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300]
    error = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        if isinstance(message, str) and message:
            return message[:1000]
    elif isinstance(error, str) and error:
        return error[:1000]
    return body[:300]


@dataclass(eq=False)
class _Replica:
    """One server of the model, and what the generator knows about it."""

    url: str  # the OpenAI API root, without a trailing slash
    shown: str  # the URL for messages and logs: without user:password@
    in_flight: int = 0
    down_until: float = 0.0  # clock time until which it is passed over
    down: bool = False


class _ReplicaError(Exception):
    """A replica failed before the answer started: the request may go to another one.

    ``message`` is the whole story when this replica was the only one; ``reason`` is the
    short form for a list; ``connect``: it could not even be reached (worth a retry)."""

    def __init__(self, replica: _Replica, reason: str, message: str, *, connect: bool) -> None:
        super().__init__(message)
        self.replica = replica
        self.reason = reason
        self.message = message
        self.connect = connect


class OpenAICompatibleGenerator:
    """Chat completions from one model on one or more OpenAI-compatible servers."""

    def __init__(
        self,
        model: ModelSettings,
        llm: LLMSettings,
        *,
        cooldown_s: float = COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = model
        self._served = model.served_name or model.name
        urls = dict.fromkeys(u.rstrip("/") for u in (model.base_url, *model.base_urls))
        self._replicas = [_Replica(u, _USERINFO.sub("", u)) for u in urls]
        self._retries = llm.retries
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0  # the replica that wins the next tie
        headers = {"Accept": "application/json"}
        if model.api_key is not None:
            headers["Authorization"] = f"Bearer {model.api_key.get_secret_value()}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(llm.timeout_s, connect=llm.connect_timeout_s),
            trust_env=False,  # never route through a proxy from the environment
        )

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def role(self) -> str:
        return self._settings.role

    @property
    def context_window(self) -> int:
        return self._settings.context_window

    @property
    def urls(self) -> list[str]:
        """The servers of this model (without credentials), in configured order."""
        return [r.shown for r in self._replicas]

    def down(self) -> list[str]:
        """The servers passed over now because they failed recently."""
        now = self._clock()
        with self._lock:
            return [r.shown for r in self._replicas if r.down and r.down_until > now]

    # -- health --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise unless at least one server answers ``/models`` and lists this model.

        Every server is asked: one that answers but does not serve the model, or refuses
        the request (a wrong API root or key), is a ``ConfigError`` even when others
        work; one that cannot be reached is put in cool-down (and logged once). Only
        when none answers is it an ``LLMUnavailableError`` naming them all."""
        failures: list[_ReplicaError] = []
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
            failures = []
            answered = 0
            for replica in self._replicas:
                try:
                    self._check_one(replica)
                    answered += 1
                except _ReplicaError as failure:
                    failures.append(failure)
            if answered:
                return
            if not all(f.connect for f in failures):
                break
        raise self._exhausted(failures) from failures[-1]

    def _check_one(self, replica: _Replica) -> None:
        try:
            response = self._send(replica, "GET", "/models")
        except ModelError as exc:  # 4xx: a wrong API root (404) or key (401/403)
            raise ConfigError(
                f"{exc}; is {replica.shown} the server's OpenAI API root (it usually ends "
                "in /v1), and is the model's api_key right?"
            ) from exc
        try:
            served = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._failed(
                replica,
                "no model list",
                f"{replica.shown}/models did not return an OpenAI model list; is "
                f"{replica.shown} an OpenAI-compatible API root (it usually ends in /v1)?",
            ) from exc
        if self._served not in served:
            raise ConfigError(
                f"the LLM server at {replica.shown} serves {served}, not {self._served!r} "
                f"(model {self.name!r}); set its served_name in ENCLAVE_LLM__MODELS or start "
                "the server with that model"
            )

    # -- answers -------------------------------------------------------------------------
    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> Generator[str | Usage, None, None]:
        body: dict[str, Any] = {
            "model": self._served,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        failures: list[_ReplicaError] = []
        for attempt in range(self._retries + 1):
            if attempt:
                if not all(f.connect for f in failures):
                    break
                logger.warning(
                    "no server of LLM %s can be reached, retrying (%s)",
                    self.name,
                    ", ".join(self.urls),
                )
                time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
            failures = []
            tried: set[int] = set()
            while (replica := self._acquire(tried)) is not None:
                try:
                    yield from self._stream_from(replica, body, messages)
                    return
                except _ReplicaError as failure:
                    failures.append(failure)
                    if len(tried) < len(self._replicas):
                        logger.warning(
                            "LLM server %s (model %s) failed before answering (%s); "
                            "trying another server",
                            replica.shown,
                            self.name,
                            failure.reason,
                        )
                finally:
                    self._release(replica)
        raise self._exhausted(failures) from failures[-1]

    def _stream_from(
        self, replica: _Replica, body: dict[str, Any], messages: Sequence[dict[str, str]]
    ) -> Generator[str | Usage, None, None]:
        """The answer from one replica. A failure before the first piece of text is a
        ``_ReplicaError`` (the caller tries another replica); after it, the answer is lost."""
        pieces = 0
        usage: Usage | None = None
        finished = False
        with closing(self._send(replica, "POST", "/chat/completions", body, stream=True)) as r:
            try:
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    event = json.loads(data)
                    if event.get("error"):
                        message = (
                            f"the LLM server at {replica.shown} failed mid-answer: {event['error']}"
                        )
                        if not pieces:
                            raise self._failed(replica, "error event", message)
                        self._mark_down(replica, "error event")
                        raise LLMUnavailableError(message)
                    if event.get("usage"):
                        u = event["usage"]
                        usage = Usage(
                            int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
                        )
                    for choice in event.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            pieces += 1
                            yield text
            except httpx.TimeoutException as exc:
                message = (
                    f"the LLM server at {replica.shown} sent nothing for "
                    f"{self._client.timeout.read} s; it may be overloaded "
                    "(raise ENCLAVE_LLM__TIMEOUT_S or add capacity)"
                )
                if not pieces:
                    raise self._failed(replica, "timeout", message) from exc
                self._mark_down(replica, "timeout")
                raise LLMUnavailableError(message) from exc
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                reason = exc.__class__.__name__
                message = (
                    f"the LLM server at {replica.shown} failed mid-answer ({reason}); try again"
                )
                if not pieces:
                    raise self._failed(replica, reason, message) from exc
                self._mark_down(replica, reason)
                raise LLMUnavailableError(message) from exc
        if not finished and pieces == 0:
            raise ModelError(
                f"the LLM server at {replica.shown} ended the stream without an answer "
                "(llama.cpp does this when the prompt does not fit its context window; check "
                "the model's context_window in ENCLAVE_LLM__MODELS)"
            )
        if usage is None:  # the server does not report usage: estimate it
            prompt = sum(estimate_tokens(m.get("content", "")) for m in messages)
            usage = Usage(prompt, pieces)
        yield usage

    # -- one request to one replica ------------------------------------------------------
    def _send(
        self,
        replica: _Replica,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        """A response with a success status (the caller closes a streamed one); a
        ``_ReplicaError`` when the replica cannot serve it, a ``ModelError`` on a 4xx."""
        request = self._client.build_request(method, replica.url + path, json=body)
        try:
            response = self._client.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._failed(
                replica, exc.__class__.__name__, self._unreachable(replica, exc), connect=True
            ) from exc
        except httpx.TimeoutException as exc:
            raise self._failed(
                replica,
                "timeout",
                f"the LLM server at {replica.shown} sent nothing for "
                f"{self._client.timeout.read} s; it may be overloaded "
                "(raise ENCLAVE_LLM__TIMEOUT_S or add capacity)",
            ) from exc
        except httpx.HTTPError as exc:
            raise self._failed(
                replica, exc.__class__.__name__, self._unreachable(replica, exc)
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.read().decode("utf-8", "replace")
            except httpx.HTTPError:
                detail = ""
            finally:
                response.close()
            status = response.status_code
            if status >= 500 or status == 429:
                raise self._failed(
                    replica,
                    f"HTTP {status}",
                    f"the LLM server at {replica.shown} is unavailable (HTTP {status}); try again",
                )
            raise ModelError(
                f"the LLM server at {replica.shown} refused the request (HTTP {status}): "
                f"{_error_message(detail)}"
            )
        self._mark_up(replica)
        return response

    def _unreachable(self, replica: _Replica, exc: Exception) -> str:
        return (
            f"the LLM server at {replica.shown} (model {self.name!r}) cannot be reached "
            f"({exc.__class__.__name__}); check that it is running and ENCLAVE_LLM__MODELS"
        )

    def _exhausted(self, failures: list[_ReplicaError]) -> LLMUnavailableError:
        """The error when every replica failed: the one failure's own message, or a list."""
        last = {f.replica.shown: f for f in failures}
        if len(last) == 1:
            return LLMUnavailableError(failures[-1].message)
        listed = "; ".join(f"{url} ({f.reason})" for url, f in last.items())
        if all(f.connect for f in last.values()):
            return LLMUnavailableError(
                f"none of the {len(last)} LLM servers of model {self.name!r} can be reached: "
                f"{listed}; check that they are running and ENCLAVE_LLM__MODELS"
            )
        return LLMUnavailableError(
            f"all {len(last)} LLM servers of model {self.name!r} failed: {listed}; "
            "try again, and check that they are running and ENCLAVE_LLM__MODELS"
        )

    # -- choosing replicas ---------------------------------------------------------------
    def _acquire(self, tried: set[int]) -> _Replica | None:
        """The replica for the next try (none of ``tried``), counted in flight: the
        fewest requests in flight wins, ties in turn; those in cool-down come last."""
        now = self._clock()
        n = len(self._replicas)
        with self._lock:
            left = [i for i in range(n) if i not in tried]
            if not left:
                return None
            best = min(
                left,
                key=lambda i: (
                    self._replicas[i].down_until > now,
                    self._replicas[i].in_flight,
                    (i - self._next) % n,
                ),
            )
            tried.add(best)
            self._next = (best + 1) % n
            replica = self._replicas[best]
            replica.in_flight += 1
            return replica

    def _release(self, replica: _Replica) -> None:
        with self._lock:
            replica.in_flight -= 1

    def _failed(
        self, replica: _Replica, reason: str, message: str, *, connect: bool = False
    ) -> _ReplicaError:
        self._mark_down(replica, reason)
        return _ReplicaError(replica, reason, message, connect=connect)

    def _mark_down(self, replica: _Replica, reason: str) -> None:
        with self._lock:
            replica.down_until = self._clock() + self._cooldown_s
            was_down, replica.down = replica.down, True
        if not was_down and len(self._replicas) > 1:
            logger.warning(
                "LLM server %s (model %s) failed (%s); passing it over for %g s",
                replica.shown,
                self.name,
                reason,
                self._cooldown_s,
            )

    def _mark_up(self, replica: _Replica) -> None:
        with self._lock:
            was_down, replica.down, replica.down_until = replica.down, False, 0.0
        if was_down and len(self._replicas) > 1:
            logger.info("LLM server %s (model %s) answers again", replica.shown, self.name)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
