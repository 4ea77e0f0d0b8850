"""The UI's HTTP client of the Enclave API: the only way the UI reaches documents or models.

Every failure becomes :class:`ApiCallError`, whose ``friendly`` sentence says what happened
and what to do; the pages show that sentence and nothing else (no tracebacks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0  # between two bytes of a streamed answer (the LLM may be slow)


# the status a JSON response would have had, for an SSE ``error`` event's type
_STREAM_STATUS = {
    "invalid_request": 400,
    "not_found": 404,
    "llm_error": 502,
    "llm_unavailable": 503,
    "unavailable": 503,
}


class ApiCallError(Exception):
    """A request that did not work, with one sentence for the user."""

    def __init__(self, friendly: str, *, status: int = 0, kind: str = "") -> None:
        super().__init__(friendly)
        self.friendly = friendly
        self.status = status
        self.kind = kind

    @property
    def signed_out(self) -> bool:
        """The key was rejected: the user has to sign in again."""
        return self.status == 401


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event of ``POST /v1/ask`` with ``stream``."""

    event: str  # retrieval | token | citations | done | error
    data: dict[str, Any]


def problem_for(
    status: int, body: dict[str, Any], headers: httpx.Headers | None = None
) -> ApiCallError:
    """The friendly sentence for an API error response (status + ``{"error": {...}}``)."""
    raw = body.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    message = str(error.get("message") or "").rstrip(".")
    kind = str(error.get("type") or "")
    request_id = str(error.get("request_id") or "")
    if status == 401:
        text = (
            "Your API key was not accepted: it may be mistyped, revoked or expired. "
            "Sign in again with a current key from your administrator."
        )
    elif status == 403:
        text = "Your API key does not allow this. Ask an administrator for an admin key."
    elif status == 429:
        wait = headers.get("Retry-After", "a few") if headers is not None else "a few"
        text = f"Too many requests from your key. Wait {wait} seconds, then try again."
    elif kind == "llm_unavailable" or (status == 503 and "LLM" in message):
        text = (
            "The language model is not available right now. Try again in a minute; "
            "if it keeps happening, tell your administrator."
        )
    elif status == 503:
        text = (
            f"Enclave is not ready ({message}). Try again in a minute; if it keeps "
            "happening, tell your administrator."
        )
    elif status in (400, 404, 413, 422) and message:
        text = f"{message[0].upper()}{message[1:]}."
    elif status == 502:
        text = f"The language model failed to answer ({message}). Try rephrasing or try again."
    else:
        text = "Something went wrong on the server. Try again; if it keeps happening, give " + (
            f"your administrator this request id: {request_id}." if request_id else "it the time."
        )
    return ApiCallError(text, status=status, kind=kind)


class EnclaveClient:
    """Calls the API with one API key; one instance per signed-in browser session."""

    def __init__(self, base_url: str, api_key: str, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise problem_for(response.status_code, _json(response), response.headers)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params or None).json()

    def _unreachable(self, exc: httpx.HTTPError) -> ApiCallError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ApiCallError(
                "The server took too long to answer. Try again; a shorter question may help."
            )
        return ApiCallError(
            f"Enclave's API at {self.base_url} cannot be reached. Check that it is running "
            "(`enclave serve`) and that ENCLAVE_API_URL points at it, then try again."
        )

    # -- who am I ---------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        return dict(self._get("/v1/me"))

    def models(self) -> list[str]:
        return [m["id"] for m in self._get("/v1/models")["data"]]

    # -- answers ----------------------------------------------------------------------
    def ask_stream(
        self, question: str, conversation_id: str | None = None, model: str | None = None
    ) -> Iterator[StreamEvent]:
        """The events of one streamed answer; an ``error`` event becomes ApiCallError."""
        body: dict[str, Any] = {"question": question, "stream": True}
        if conversation_id:
            body["conversation_id"] = conversation_id
        if model:
            body["model"] = model
        try:
            with self._http.stream("POST", "/v1/ask", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise problem_for(response.status_code, _json(response), response.headers)
                for sse in EventSource(response).iter_sse():
                    event = StreamEvent(sse.event, sse.json())
                    if event.event == "error":
                        kind = str(event.data.get("error", {}).get("type", ""))
                        raise problem_for(_STREAM_STATUS.get(kind, 500), event.data)
                    yield event
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def feedback(self, answer_id: str, rating: str, comment: str = "") -> None:
        self._send(
            "POST",
            "/v1/feedback",
            json={"answer_id": answer_id, "rating": rating, "comment": comment},
        )

    def source(self, doc_id: str) -> dict[str, Any]:
        return dict(self._get(f"/v1/sources/{doc_id}"))

    def source_file(self, doc_id: str) -> tuple[bytes, str, str]:
        """(content, file name, media type) of a document's original file."""
        response = self._send("GET", f"/v1/sources/{doc_id}/file")
        disposition = response.headers.get("content-disposition", "")
        name = _filename(disposition) or doc_id
        return response.content, name, response.headers.get("content-type", "")

    # -- conversations ----------------------------------------------------------------
    def conversations(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/conversations")["conversations"])

    def conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        return list(self._get(f"/v1/conversations/{conversation_id}")["turns"])

    def delete_conversation(self, conversation_id: str) -> None:
        self._send("DELETE", f"/v1/conversations/{conversation_id}")

    # -- admin ------------------------------------------------------------------------
    def documents(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/documents")["documents"])

    def delete_document(self, doc_id: str) -> None:
        self._send("DELETE", f"/v1/documents/{doc_id}")

    def upload(self, files: list[tuple[str, bytes]], groups: list[str], tags: list[str]) -> str:
        form = {k: ",".join(v) for k, v in (("groups", groups), ("tags", tags)) if v}
        response = self._send(
            "POST",
            "/v1/documents",
            files=[("files", (name, content)) for name, content in files],
            data=form,
        )
        return str(response.json()["job_id"])

    def ingest_folder(self, path: str, groups: list[str], tags: list[str]) -> str:
        body = {"path": path, "groups": groups or None, "tags": tags or None}
        return str(self._send("POST", "/v1/ingest", json=body).json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._get(f"/v1/jobs/{job_id}"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/jobs")["jobs"])

    def access_rules(self) -> dict[str, Any]:
        return dict(self._get("/v1/access/rules"))

    def set_access_rule(self, path: str, groups: list[str]) -> dict[str, Any]:
        body = {"path": path, "groups": groups}
        return dict(self._send("PUT", "/v1/access/rules", json=body).json())

    def remove_access_rule(self, path: str) -> dict[str, Any]:
        return dict(self._send("DELETE", "/v1/access/rules", params={"path": path}).json())

    def access_history(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/access/history")["changes"])

    def usage(self, days: int) -> dict[str, Any]:
        return dict(self._get("/v1/usage", days=days))

    def quality(self) -> dict[str, Any]:
        return dict(self._get("/v1/quality"))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _filename(disposition: str) -> str:
    """The file name of a Content-Disposition header (RFC 6266 ``filename*`` first)."""
    from email.message import Message

    message = Message()
    message["content-disposition"] = disposition
    return str(message.get_filename() or "")
