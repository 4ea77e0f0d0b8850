"""A deterministic OpenAI-compatible chat server for the UI tests.

It answers like a perfectly obedient extractive model: the sentence of the numbered context
passages that shares most words with the question, followed by that passage's ``[n]``,
streamed a word at a time. Follow-up rewrites get the previous question plus the follow-up.
The UI tests need answers that always cite, quickly; the real models (llama.cpp, vLLM) are
tested through the API in tests/integration and tests/vllm.

Run: ``python -m tests.extractive_llm --port N [--word-delay S]``; it serves any model name
it is asked for and lists ``quick`` and ``thorough``. Tests start it with :func:`running`
and point Enclave at it with :func:`llm_settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from core.settings import LLMSettings, ModelSettings
from tests.processes import free_port, stop, wait_ok

MODELS = ("quick", "thorough")
WORD_DELAY_S = 0.03
_BLOCK = re.compile(r"^\[(\d+)\] .*$", re.MULTILINE)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$))+[.!?]*")  # not inside "2.08"
_STOP = {"the", "a", "an", "of", "to", "do", "does", "how", "what", "is", "are", "i", "my", "in"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def answer(messages: list[dict[str, Any]]) -> str:
    system = str(messages[0].get("content", "")) if messages else ""
    question = str(messages[-1].get("content", ""))
    if system.startswith("Rewrite"):
        asked = re.findall(r"^User: (.*)$", question, re.MULTILINE)
        follow_up = question.rsplit("Follow-up question:", 1)[-1].split("\n")[0].strip()
        return f"{asked[-1] if asked else ''} {follow_up}".strip()
    context = system.split("Context:", 1)[-1]
    heads = list(_BLOCK.finditer(context))
    wanted = _words(question)
    best: tuple[int, str, str] = (0, "", "")
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(context)
        for sentence in _SENTENCE.findall(context[head.end() : end]):
            overlap = len(wanted & _words(sentence))
            if overlap > best[0]:
                best = (overlap, head.group(1), sentence.strip())
    if not best[1]:
        return "The documents do not cover this question."
    return f"{best[2]} [{best[1]}]"


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        text = answer(body["messages"])
        model = body.get("model", MODELS[0])
        usage = {"prompt_tokens": 100, "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        async def events() -> AsyncIterator[str]:
            def chunk(delta: dict[str, str], finish: str | None = None) -> str:
                data = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(data)}\n\n"

            for i, word in enumerate(text.split(" ")):
                yield chunk({"content": word if i == 0 else f" {word}"})
                await asyncio.sleep(WORD_DELAY_S)
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                final = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@contextmanager
def running(log: Path, word_delay_s: float = WORD_DELAY_S) -> Iterator[str]:
    """This server as a real process on a free loopback port (output to ``log``): its
    OpenAI API root, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "tests.extractive_llm", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--word-delay", str(word_delay_s)],
            stdout=out,
            stderr=out,
            cwd=Path(__file__).resolve().parents[1],
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ok(process, f"{url}/models", log, limit_s=120)
        yield url
    finally:
        stop(process)


def llm_settings(url: str) -> LLMSettings:
    """Two models (``quick``, ``thorough``) on the server at ``url``, failing fast."""
    return LLMSettings(
        models=[
            ModelSettings(name="quick", base_url=url, role="small"),
            ModelSettings(name="thorough", base_url=url, role="large"),
        ],
        retries=0,
        connect_timeout_s=2,
        timeout_s=30,
    )


def main() -> None:
    global WORD_DELAY_S
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--word-delay", type=float, default=WORD_DELAY_S, help="seconds")
    args = parser.parse_args()
    WORD_DELAY_S = args.word_delay
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
