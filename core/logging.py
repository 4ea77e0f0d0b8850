"""Logging set-up, called only by entry points."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

_NOISY = ("httpx", "urllib3", "sentence_transformers", "unstructured", "pdfminer", "filelock")

# The id of the API request being served (set by the API's middleware; copied into the
# threads that serve it): every log line written on its behalf carries it.
request_id_var: ContextVar[str] = ContextVar("request_id", default="")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id (when serving
    a request) and exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger [request id]: message`` (the id only while serving a request)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if request_id := request_id_var.get():
            head, sep, rest = line.partition(": ")
            line = f"{head} [{request_id}]{sep}{rest}"
        return line


def configure_logging(level: str = "WARNING", json_format: bool = False) -> None:
    """Send logs to stderr (stdout stays clean for ``--json`` output)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
