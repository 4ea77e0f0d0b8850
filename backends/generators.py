"""A Generator on any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, TGI.

One HTTP client per model. Connection failures are retried with exponential backoff
(only before the first token: a half-streamed answer is never restarted); a read
timeout or a server error is an ``LLMUnavailableError`` at once. Streaming parses
the server-sent events of ``/chat/completions`` and closes the HTTP response when
the caller stops iterating, which makes vLLM and llama.cpp stop generating.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import httpx

from core.errors import ConfigError, LLMUnavailableError, ModelError
from core.settings import LLMSettings, ModelSettings
from core.types import Usage

logger = logging.getLogger(__name__)

_BACKOFF_S = 0.5


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


class OpenAICompatibleGenerator:
    """Chat completions from one model on one OpenAI-compatible server."""

    def __init__(self, model: ModelSettings, llm: LLMSettings) -> None:
        self._settings = model
        self._served = model.served_name or model.name
        self._base = model.base_url.rstrip("/")
        self._retries = llm.retries
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

    def check(self) -> None:
        """Raise unless the server answers ``/models`` and lists this model."""
        try:
            response = self._send("GET", "/models")
        except ModelError as exc:  # 4xx: a wrong API root (404) or key (401/403)
            raise ConfigError(
                f"{exc}; is {self._base} the server's OpenAI API root (it usually ends "
                "in /v1), and is the model's api_key right?"
            ) from exc
        try:
            served = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMUnavailableError(
                f"{self._base}/models did not return an OpenAI model list; is "
                f"{self._base} an OpenAI-compatible API root (it usually ends in /v1)?"
            ) from exc
        if self._served not in served:
            raise ConfigError(
                f"the LLM server at {self._base} serves {served}, not {self._served!r} "
                f"(model {self.name!r}); set its served_name in ENCLAVE_LLM__MODELS or start "
                "the server with that model"
            )

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
        pieces = 0
        usage: Usage | None = None
        finished = False
        with closing(self._send("POST", "/chat/completions", body=body, stream=True)) as response:
            try:
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    event = json.loads(data)
                    if event.get("error"):
                        raise LLMUnavailableError(
                            f"the LLM server at {self._base} failed mid-answer: {event['error']}"
                        )
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
                raise LLMUnavailableError(
                    f"the LLM server at {self._base} sent nothing for "
                    f"{self._client.timeout.read} s; it may be overloaded "
                    "(raise ENCLAVE_LLM__TIMEOUT_S or add capacity)"
                ) from exc
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                raise LLMUnavailableError(
                    f"the LLM server at {self._base} failed mid-answer "
                    f"({exc.__class__.__name__}); try again"
                ) from exc
        if not finished and pieces == 0:
            raise ModelError(
                f"the LLM server at {self._base} ended the stream without an answer (llama.cpp "
                "does this when the prompt does not fit its context window; check the model's "
                "context_window in ENCLAVE_LLM__MODELS)"
            )
        if usage is None:  # the server does not report usage: estimate it
            prompt = sum(estimate_tokens(m.get("content", "")) for m in messages)
            usage = Usage(prompt, pieces)
        yield usage

    def _send(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, stream: bool = False
    ) -> httpx.Response:
        """A response with a success status, after retrying connection failures (with
        exponential backoff); the caller closes a streamed one."""
        for attempt in range(self._retries + 1):
            request = self._client.build_request(method, self._base + path, json=body)
            try:
                response = self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self._retries:
                    logger.warning("LLM %s unreachable, retrying (%s)", self._base, exc)
                    time.sleep(_BACKOFF_S * 2**attempt)
                    continue
                raise self._unreachable(exc) from exc
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from exc
            if response.status_code >= 400:
                detail = response.read().decode("utf-8", "replace")
                response.close()
                raise self._refused(response.status_code, detail)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: Exception) -> LLMUnavailableError:
        return LLMUnavailableError(
            f"the LLM server at {self._base} (model {self.name!r}) cannot be reached "
            f"({exc.__class__.__name__}); check that it is running and ENCLAVE_LLM__MODELS"
        )

    def _refused(self, status: int, detail: str) -> LLMUnavailableError | ModelError:
        if status >= 500 or status == 429:
            return LLMUnavailableError(
                f"the LLM server at {self._base} is unavailable (HTTP {status}); try again"
            )
        return ModelError(
            f"the LLM server at {self._base} refused the request (HTTP {status}): "
            f"{_error_message(detail)}"
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
