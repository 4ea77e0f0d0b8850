"""Shared start of the bench scripts: offline, quiet environment and import paths.

Imported first by every ``bench/*.py`` (which run as scripts, so this folder leads
``sys.path``). It sets the offline/telemetry variables before any model library is
imported, then takes this folder off ``sys.path`` (``bench/ingest.py`` would shadow
the ``ingest`` package) and puts the repository root first.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    """The CPU's model name, for the machine line of a report."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What a figure was measured on: cores, CPU, load, torch threads and versions."""
    import platform

    import torch

    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "load_1m_at_start": load,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def emit_json(result: dict[str, Any], as_json: bool) -> None:
    """With ``--json``, the result as one JSON object on stdout."""
    if as_json:
        print(json.dumps(result, default=str))
