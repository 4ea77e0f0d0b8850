"""Every log line written while serving a request carries its request id: in the
handler, in the thread pool that runs sync endpoints, inside a streaming response,
and in the error body; JSON lines when deployed, text otherwise."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from core.errors import StoreError
from core.logging import JsonFormatter, TextFormatter, request_id_var
from serving.api.errors import install_error_handlers
from serving.api.metrics import Metrics
from serving.api.middleware import RequestContext

log = logging.getLogger("enclave.test")


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:  # runs in the thread pool
        log.warning("in a sync endpoint")
        return {"ok": "yes"}

    @app.get("/stream")
    def stream() -> StreamingResponse:
        def body() -> Iterator[str]:
            for i in range(3):
                log.warning("streaming part %d", i)
                yield f"part {i}\n"

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/fail")
    def fail() -> None:
        log.warning("about to fail")
        raise StoreError("the store is unreachable")

    app.add_middleware(RequestContext, metrics=Metrics())  # type: ignore[arg-type]
    return app


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        log.removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_log_lines_in_sync_endpoints_and_streams_carry_the_request_id(
    captured: io.StringIO,
) -> None:
    with TestClient(_app()) as client:
        given = client.get("/sync", headers={"X-Request-ID": "caller-chosen-1"})
        streamed = client.get("/stream")
    assert given.headers["x-request-id"] == "caller-chosen-1"
    new_id = streamed.headers["x-request-id"]
    assert len(new_id) == 32
    lines = _lines(captured)
    assert [line["message"] for line in lines] == [
        "in a sync endpoint",
        "streaming part 0",
        "streaming part 1",
        "streaming part 2",
    ]
    assert lines[0]["request_id"] == "caller-chosen-1"
    assert {line["request_id"] for line in lines[1:]} == {new_id}


def test_an_error_body_and_its_log_lines_share_the_request_id(captured: io.StringIO) -> None:
    with TestClient(_app()) as client:
        response = client.get("/fail", headers={"X-Request-ID": "bad\nid"})  # not sane: replaced
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "unavailable"
    assert error["request_id"] == response.headers["x-request-id"] != "bad\nid"
    lines = _lines(captured)
    assert lines[0]["message"] == "about to fail"
    assert {line["request_id"] for line in lines} == {error["request_id"]}


def test_lines_outside_a_request_have_no_id_and_text_lines_show_it() -> None:
    record = logging.LogRecord("enclave", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
    assert TextFormatter().format(record) == "WARNING enclave: hello x"
    token = request_id_var.set("abc123")
    try:
        assert json.loads(JsonFormatter().format(record))["request_id"] == "abc123"
        assert TextFormatter().format(record) == "WARNING enclave [abc123]: hello x"
    finally:
        request_id_var.reset(token)
