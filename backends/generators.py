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

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextlib import closing
from typing import Any

import httpx
from httpx_sse import EventSource
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from backends.replicas import Replica, Replicas
from core.errors import ConfigError, LLMUnavailableError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Usage

logger = logging.getLogger(__name__)


class _RoundError(Exception):
    """Every replica failed in one round (before answering)."""

    def __init__(self, failures: list[_ReplicaError]) -> None:
        super().__init__("; ".join(f.reason for f in failures))
        self.failures = failures

    @property
    def unreachable(self) -> bool:
        """Whether every failure was a connection failure (worth a retry after a pause)."""
        return all(f.connect for f in self.failures)


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


class _ReplicaError(Exception):
    """A replica failed before the answer started: the request may go to another one.

    ``message`` is the whole story when this replica was the only one; ``reason`` is the
    short form for a list; ``connect``: it could not even be reached (worth a retry)."""

    def __init__(self, replica: Replica, reason: str, message: str, *, connect: bool) -> None:
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
        self._replicas = Replicas(
            model.name,
            [(u, _USERINFO.sub("", u)) for u in urls],
            cooldown_s=cooldown_s,
            clock=clock,
        )
        self._retries = llm.retries
        headers = {"Accept": "application/json"}
        if model.api_key is not None:
            headers["Authorization"] = f"Bearer {model.api_key.get_secret_value()}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(llm.timeout_s, connect=llm.connect_timeout_s),
            trust_env=False,  # never route through a proxy from the environment
        )
        # one asynchronous client per event loop (its connections belong to that loop)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._aclients = weakref.WeakKeyDictionary()

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
        return self._replicas.urls

    def down(self) -> list[str]:
        """The servers passed over now because they failed recently."""
        return self._replicas.down()

    # -- health --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise unless at least one server answers ``/models`` and lists this model.

        Every server is asked: one that answers but does not serve the model, or refuses
        the request (a wrong API root or key), is a ``ConfigError`` even when others
        work; one that cannot be reached is put in cool-down (and logged once). Only
        when none answers is it an ``LLMUnavailableError`` naming them all."""
        try:
            for attempt in self._retrying():
                with attempt:
                    self._check_round()
        except _RoundError as failed:
            raise self._exhausted(failed.failures) from failed.failures[-1]

    def _check_round(self) -> None:
        """Ask every replica once; a :class:`_RoundError` when none answered."""
        failures: list[_ReplicaError] = []
        answered = 0
        for replica in self._replicas:
            try:
                self._check_one(replica)
                answered += 1
            except _ReplicaError as failure:
                failures.append(failure)
        if not answered:
            raise _RoundError(failures)

    def _check_one(self, replica: Replica) -> None:
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
        """The answer as it is written (sync: the command line and evaluation)."""
        body = self._body(messages, max_tokens, temperature)
        try:
            for attempt in self._retrying():
                with attempt:
                    first, rest = self._start(body, messages)
        except _RoundError as failed:
            raise self._exhausted(failed.failures) from failed.failures[-1]
        with closing(rest):
            yield first
            yield from rest

    async def astream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> AsyncGenerator[str | Usage, None]:
        """The answer as it is written, without holding a thread while the server writes
        (the API: many slow answers at once)."""
        body = self._body(messages, max_tokens, temperature)
        try:
            async for attempt in self._aretrying():
                with attempt:
                    first, rest = await self._astart(body, messages)
        except _RoundError as failed:
            raise self._exhausted(failed.failures) from failed.failures[-1]
        try:
            yield first
            async for piece in rest:
                yield piece
        finally:
            await rest.aclose()

    def _body(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        return {
            "model": self._served,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def _retry_policy(self) -> dict[str, Any]:
        """Rounds over the replicas, again with exponential backoff while every replica
        failed only to connect (``retries`` times); any other failure ends them."""
        return {
            "stop": stop_after_attempt(self._retries + 1),
            "wait": wait_exponential(multiplier=_BACKOFF_S, max=30),
            "retry": retry_if_exception(lambda e: isinstance(e, _RoundError) and e.unreachable),
            "before_sleep": lambda _: logger.warning(
                "no server of LLM %s can be reached, retrying (%s)", self.name, ", ".join(self.urls)
            ),
            "reraise": True,
        }

    def _retrying(self) -> Retrying:
        return Retrying(**self._retry_policy())

    def _aretrying(self) -> AsyncRetrying:
        return AsyncRetrying(**self._retry_policy())

    def _start(
        self, body: dict[str, Any], messages: Sequence[dict[str, str]]
    ) -> tuple[str | Usage, Generator[str | Usage, None, None]]:
        """One round over the replicas: the first piece of an answer and the rest of it,
        from the first replica that gets that far; a :class:`_RoundError` when none did."""
        failures: list[_ReplicaError] = []
        tried: set[int] = set()
        while (replica := self._replicas.acquire(tried)) is not None:
            answer = self._released(replica, self._stream_from(replica, body, messages))
            try:
                return next(answer), answer
            except _ReplicaError as failure:
                failures.append(self._passed_over(replica, failure, tried))
        raise _RoundError(failures)

    async def _astart(
        self, body: dict[str, Any], messages: Sequence[dict[str, str]]
    ) -> tuple[str | Usage, AsyncGenerator[str | Usage, None]]:
        """:meth:`_start` without blocking."""
        failures: list[_ReplicaError] = []
        tried: set[int] = set()
        while (replica := self._replicas.acquire(tried)) is not None:
            answer = self._areleased(replica, self._astream_from(replica, body, messages))
            try:
                return await answer.__anext__(), answer
            except _ReplicaError as failure:
                failures.append(self._passed_over(replica, failure, tried))
        raise _RoundError(failures)

    def _passed_over(
        self, replica: Replica, failure: _ReplicaError, tried: set[int]
    ) -> _ReplicaError:
        if len(tried) < len(self._replicas):
            logger.warning(
                "LLM server %s (model %s) failed before answering (%s); trying another server",
                replica.shown,
                self.name,
                failure.reason,
            )
        return failure

    def _released(
        self, replica: Replica, answer: Generator[str | Usage, None, None]
    ) -> Generator[str | Usage, None, None]:
        """``answer``, counting as in flight on ``replica`` until it ends or is closed."""
        try:
            yield from answer
        finally:
            answer.close()
            self._replicas.release(replica)

    async def _areleased(
        self, replica: Replica, answer: AsyncGenerator[str | Usage, None]
    ) -> AsyncGenerator[str | Usage, None]:
        try:
            async for piece in answer:
                yield piece
        finally:
            await answer.aclose()
            self._replicas.release(replica)

    def _stream_from(
        self, replica: Replica, body: dict[str, Any], messages: Sequence[dict[str, str]]
    ) -> Generator[str | Usage, None, None]:
        """The answer from one replica. A failure before the first piece of text is a
        ``_ReplicaError`` (the caller tries another replica); after it, the answer is lost."""
        reader = _Reader(self, replica)
        with closing(self._send(replica, "POST", "/chat/completions", body, stream=True)) as r:
            try:
                for sse in EventSource(r).iter_sse():
                    yield from reader.feed(sse.data)
                    if reader.finished:
                        break
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                raise reader.broken(exc) from exc
        yield reader.end(messages)

    async def _astream_from(
        self, replica: Replica, body: dict[str, Any], messages: Sequence[dict[str, str]]
    ) -> AsyncGenerator[str | Usage, None]:
        """:meth:`_stream_from` on the asynchronous client."""
        reader = _Reader(self, replica)
        response = await self._asend(replica, "/chat/completions", body)
        try:
            async for sse in EventSource(response).aiter_sse():
                for piece in reader.feed(sse.data):
                    yield piece
                if reader.finished:
                    break
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise reader.broken(exc) from exc
        finally:
            await response.aclose()
        yield reader.end(messages)

    # -- one request to one replica ------------------------------------------------------
    def _send(
        self,
        replica: Replica,
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
        except httpx.HTTPError as exc:
            raise self._send_failure(replica, exc) from exc
        if response.status_code >= 400:
            try:
                detail = response.read().decode("utf-8", "replace")
            except httpx.HTTPError:
                detail = ""
            finally:
                response.close()
            raise self._refused(replica, response.status_code, detail)
        self._replicas.mark_up(replica)
        return response

    async def _asend(self, replica: Replica, path: str, body: dict[str, Any]) -> httpx.Response:
        """:meth:`_send` of a streamed POST on the asynchronous client."""
        client = self._async_client()
        request = client.build_request("POST", replica.url + path, json=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._send_failure(replica, exc) from exc
        if response.status_code >= 400:
            try:
                detail = (await response.aread()).decode("utf-8", "replace")
            except httpx.HTTPError:
                detail = ""
            finally:
                await response.aclose()
            raise self._refused(replica, response.status_code, detail)
        self._replicas.mark_up(replica)
        return response

    def _async_client(self) -> httpx.AsyncClient:
        """The asynchronous client of the running event loop (made on first use there)."""
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = httpx.AsyncClient(
                headers=self._client.headers,
                timeout=self._client.timeout,
                trust_env=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=50),
            )
        return client

    def _send_failure(self, replica: Replica, exc: httpx.HTTPError) -> _ReplicaError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._failed(
                replica, exc.__class__.__name__, self._unreachable(replica, exc), connect=True
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._failed(replica, "timeout", self._silent(replica))
        return self._failed(replica, exc.__class__.__name__, self._unreachable(replica, exc))

    def _refused(self, replica: Replica, status: int, detail: str) -> Exception:
        if status >= 500 or status == 429:
            return self._failed(
                replica,
                f"HTTP {status}",
                f"the LLM server at {replica.shown} is unavailable (HTTP {status}); try again",
            )
        return ModelError(
            f"the LLM server at {replica.shown} refused the request (HTTP {status}): "
            f"{_error_message(detail)}"
        )

    def _silent(self, replica: Replica) -> str:
        return (
            f"the LLM server at {replica.shown} sent nothing for {self._client.timeout.read} s; "
            "it may be overloaded (raise ENCLAVE_LLM__TIMEOUT_S or add capacity)"
        )

    def _unreachable(self, replica: Replica, exc: Exception) -> str:
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

    def _failed(
        self, replica: Replica, reason: str, message: str, *, connect: bool = False
    ) -> _ReplicaError:
        self._replicas.mark_down(replica, reason)
        return _ReplicaError(replica, reason, message, connect=connect)

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        """Close the asynchronous client of the running event loop."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Reader:
    """Reads one replica's streamed answer, event by event (the part the synchronous and
    asynchronous streams share): text, usage, the end, and what a failure means."""

    def __init__(self, generator: OpenAICompatibleGenerator, replica: Replica) -> None:
        self._generator = generator
        self._replica = replica
        self.pieces = 0
        self.usage: Usage | None = None
        self.finished = False

    def feed(self, raw: str) -> list[str]:
        """The text of one event (``[DONE]`` ends the answer)."""
        data = raw.strip()
        if not data:
            return []
        if data == "[DONE]":
            self.finished = True
            return []
        event = json.loads(data)
        if event.get("error"):
            message = f"the LLM server at {self._replica.shown} failed mid-answer: {event['error']}"
            if not self.pieces:
                raise self._generator._failed(self._replica, "error event", message)
            self._generator._replicas.mark_down(self._replica, "error event")
            raise LLMUnavailableError(message)
        if event.get("usage"):
            u = event["usage"]
            self.usage = Usage(
                int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
            )
        texts = [
            text
            for choice in event.get("choices") or ()
            if (text := (choice.get("delta") or {}).get("content"))
        ]
        self.pieces += len(texts)
        return texts

    def broken(self, exc: Exception) -> Exception:
        """What the stream breaking means: before any text, try another replica; after it,
        the answer is lost."""
        g, replica = self._generator, self._replica
        if isinstance(exc, httpx.TimeoutException):
            reason, message = "timeout", g._silent(replica)
        else:
            reason = exc.__class__.__name__
            message = f"the LLM server at {replica.shown} failed mid-answer ({reason}); try again"
        if not self.pieces:
            return g._failed(replica, reason, message)
        g._replicas.mark_down(replica, reason)
        return LLMUnavailableError(message)

    def end(self, messages: Sequence[dict[str, str]]) -> Usage:
        """The usage at the end of the answer (estimated when the server gave none)."""
        if not self.finished and self.pieces == 0:
            raise ModelError(
                f"the LLM server at {self._replica.shown} ended the stream without an answer "
                "(llama.cpp does this when the prompt does not fit its context window; check "
                "the model's context_window in ENCLAVE_LLM__MODELS)"
            )
        if self.usage is not None:
            return self.usage
        prompt = sum(estimate_tokens(m.get("content", "")) for m in messages)
        return Usage(prompt, self.pieces)
