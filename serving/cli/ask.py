"""``enclave ask``: stream an answer to the terminal, citations underneath.

Locally (the store and LLM opened by this process) or through a running server
(``ENCLAVE_API_URL`` + ``ENCLAVE_API_KEY``), which is the way to ask while
``enclave serve`` holds the embedded store.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import typer
from httpx_sse import EventSource

from backends.container import Container
from backends.sql.app import AppDatabase
from core.errors import EnclaveError, InputError, LLMUnavailableError
from ingest.access import cli_actor
from serving.answers import LOCAL_ADMIN, Answerer, Completed, Token, local_answerer
from serving.answers.session import AnswerSession


def print_answer(
    answerer: Answerer,
    db: AppDatabase,
    question: str,
    groups: list[str] | None = None,
    *,
    model: str | None = None,
    as_json: bool = False,
    max_question_chars: int = 4000,
    redact_audit: bool = False,
) -> None:
    """Stream one answer to stdout (tokens as they come), citations underneath, through
    the same audited session as the API: the audit log records it (kind ``ask``, key id
    ``cli (<user>)``), also when it fails or is interrupted."""
    session = AnswerSession(
        answerer,
        db,
        key_id=cli_actor()[:64],
        principal=LOCAL_ADMIN,
        kind="ask",
        question=question,
        model=model,
        groups=groups,
        max_question_chars=max_question_chars,
        redact_audit=redact_audit,
    )
    done: Completed | None = None
    try:
        while done is None:
            event = session.next_event()
            if isinstance(event, Token) and not as_json:
                _write(event.text)
            elif isinstance(event, Completed):
                done = event
            elif event is None:  # pragma: no cover - the answerer always completes
                raise AssertionError("answer ended without completing")
    except KeyboardInterrupt:
        session.fail("cancelled")
        raise
    except Exception as exc:
        session.fail(f"error: {exc.__class__.__name__}")
        raise
    answer = done.answer
    result = {
        "answer": answer.text,
        "citations": [asdict(c) for c in answer.citations],
        "claims": [asdict(c) for c in answer.claims],
        "model": answer.model,
        "abstained": done.abstained,
        "answer_id": session.answer_id,
    }
    _finish(result, as_json, streamed=not done.abstained)


def ask_local(
    container: Container,
    question: str,
    groups: list[str] | None,
    *,
    model: str | None,
    as_json: bool,
) -> None:
    db = AppDatabase(container.database)
    try:
        print_answer(
            local_answerer(container),
            db,
            question,
            groups,
            model=model,
            as_json=as_json,
            max_question_chars=container.settings.retrieval.max_query_chars,
            redact_audit=container.settings.api.redact_audit,
        )
    finally:
        db.close()
        container.close()


def ask_remote(
    api_url: str, api_key: str, question: str, *, model: str | None, as_json: bool
) -> None:
    body: dict[str, Any] = {"question": question, "stream": True}
    if model:
        body["model"] = model
    url = api_url.rstrip("/") + "/v1/ask"
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        with httpx.stream(
            "POST", url, json=body, headers=headers, timeout=httpx.Timeout(300, connect=5)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise InputError(f"{url} answered {response.status_code}: {_message(response)}")
            for sse in EventSource(response).iter_sse():
                event, data = sse.event, sse.json()
                if event == "token" and not as_json:
                    _write(data["text"])
                elif event == "error":
                    raise LLMUnavailableError(data["error"]["message"])
                elif event == "done":
                    _finish(data, as_json, streamed=not data.get("abstained"))
    except httpx.HTTPError as exc:
        raise EnclaveError(
            f"cannot reach the Enclave API at {api_url} ({exc.__class__.__name__}); is "
            "`enclave serve` running there?"
        ) from exc


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _finish(result: dict[str, Any], as_json: bool, *, streamed: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    if not streamed:
        typer.echo(result["answer"])
    typer.echo("")
    for c in result["citations"]:
        where = f", page {c['page']}" if c.get("page") else ""
        typer.echo(f"\n[{c['n']}] {c['title']}{where} — {Path(c['source']).name}")
        typer.echo(f'    "{c["quote"]}"')
    claims = result.get("claims") or []
    unsupported = [c["text"] for c in claims if not c["supported"]]
    if claims:
        typer.echo(
            f"\n{len(claims) - len(unsupported)} of {len(claims)} sentences supported by "
            "the passages"
        )
    for text in unsupported:
        typer.echo(f"  unsupported: {text}")
