"""Shared start of the bench scripts: offline, quiet environment and import paths.

Imported first by every ``bench/*.py`` (which run as scripts, so this folder leads
``sys.path``). It sets the offline/telemetry variables before any model library is
imported, then takes this folder off ``sys.path`` (``bench/ingest.py`` would shadow
the ``ingest`` package) and puts the repository root first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
